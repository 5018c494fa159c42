"""Full-size networks built from the released YAMLs (on the meta device) have exactly the released keys."""

import pytest
import torch
from omegaconf import OmegaConf
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from sgm.util import instantiate_from_config
from test_dit_support import build_tiny

PREFIX = "model.diffusion_model."


class ForceMeta(TorchFunctionMode):
    """Allocate every new tensor on the meta device, even where SAT passes ``device=cpu`` explicitly."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _device_constructors():
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def read_keys(path: str) -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in open(path).read().splitlines():
        name, shape = line.split("\t")
        keys[name] = tuple(int(n) for n in shape.strip("[]").split(","))
    return keys


def build_meta(yaml: str) -> torch.nn.Module:
    build_tiny()  # SAT's one-time distributed set-up must run on real tensors
    config = OmegaConf.load(yaml).model.network_config
    with ForceMeta():
        return instantiate_from_config(config)


def schema(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {PREFIX + name: tuple(value.shape) for name, value in model.state_dict().items()}


def test_2b_keys_and_order_match_release():
    expected = read_keys("tests/data/cogvideox-2b-transformer.keys.tsv")
    got = schema(build_meta("configs/cogvideox_2b.yaml"))
    assert list(got.items()) == list(expected.items())


def test_2b_lora_keys_match_release():
    base = read_keys("tests/data/cogvideox-2b-transformer.keys.tsv")
    lora = read_keys("tests/data/cogvideox-2b-lora.keys.tsv")
    replaced = {name.replace(".original", "") for name in lora if ".original." in name}
    expected = {**{k: v for k, v in base.items() if k not in replaced}, **lora}
    assert len(replaced) == 4 * 30
    assert schema(build_meta("configs/cogvideox_2b_lora.yaml")) == expected


# (config, released transformer keys, released LoRA keys or None, LoRA rank)
RELEASED_1_0 = {
    "5b": ("configs/cogvideox_5b.yaml", "cogvideox-5b-transformer", None, None),
    "5b_lora": ("configs/cogvideox_5b_lora.yaml", "cogvideox-5b-transformer", "cogvideox-5b-lora", 128),
    "5b_i2v": ("configs/cogvideox_5b_i2v.yaml", "cogvideox-5b-i2v-transformer", None, None),
    "5b_i2v_lora": ("configs/cogvideox_5b_i2v_lora.yaml", "cogvideox-5b-i2v-transformer", "cogvideox-5b-i2v-lora", 256),
}


def released_keys(name: str) -> dict[str, tuple[int, ...]]:
    """The released checkpoint's keys for config ``name``: the transformer's, with a LoRA's renames and matrices."""
    _, transformer, lora, _ = RELEASED_1_0[name]
    base = read_keys(f"tests/data/{transformer}.keys.tsv")
    if lora is None:
        return base
    lora_keys = read_keys(f"tests/data/{lora}.keys.tsv")
    replaced = {key.replace(".original", "") for key in lora_keys if ".original." in key}
    return {**{k: v for k, v in base.items() if k not in replaced}, **lora_keys}


@pytest.mark.parametrize("name", ["5b", "5b_i2v"])
def test_5b_keys_buffers_and_order_match_release(name):
    """Rotary tables freqs_sin/freqs_cos (17550, 64) are persistent buffers; I2V adds the learned table first."""
    got = schema(build_meta(RELEASED_1_0[name][0]))
    assert list(got.items()) == list(released_keys(name).items())
    assert got[f"{PREFIX}mixins.pos_embed.freqs_sin"] == (13 * 30 * 45, 64)


@pytest.mark.parametrize("name", ["5b_lora", "5b_i2v_lora"])
def test_5b_lora_keys_match_release(name):
    _, _, _, r = RELEASED_1_0[name]
    model = build_meta(RELEASED_1_0[name][0])
    got = schema(model)
    assert got == released_keys(name)
    assert got[f"{PREFIX}transformer.layers.0.attention.dense.matrix_A.0"] == (r, 3072)
    assert sum(1 for key in got if ".matrix_" in key) == 42 * 8


class ReleasedLayout(torch.nn.Module):
    """The engine's key layout for the DiT alone (``model.diffusion_model.*``)."""

    def __init__(self, dit: torch.nn.Module):
        super().__init__()
        from sgm.modules.diffusionmodules.wrappers import OpenAIWrapper

        self.model = OpenAIWrapper(dit)


@pytest.mark.parametrize("name", list(RELEASED_1_0))
def test_released_layout_loads_with_no_missing_or_unexpected_key(name):
    """A full-size checkpoint in the released layout (meta tensors of the released shapes) passes our checked load;
    a LoRA model also takes the plain released transformer (its matrices are then the missing keys allowed)."""
    from input_errors import InputError
    from checkpoints.sat_checkpoint import load_checked_state_dict

    model = ReleasedLayout(build_meta(RELEASED_1_0[name][0]))
    released = {key: torch.empty(shape, device="meta") for key, shape in released_keys(name).items()}
    load_checked_state_dict(model, released, name)
    if RELEASED_1_0[name][2] is not None:
        plain = {key: torch.empty(shape, device="meta") for key, shape in read_keys(f"tests/data/{RELEASED_1_0[name][1]}.keys.tsv").items()}
        load_checked_state_dict(model, plain, name, allow_missing_lora=True)
        with pytest.raises(InputError, match="matrix_A"):
            load_checked_state_dict(model, plain, name)
    released.pop(f"{PREFIX}mixins.pos_embed.freqs_cos")  # older conversions: the computed table stays, with a notice
    with pytest.warns(UserWarning, match=rf"^{name} has no rotary tables \['freqs_cos'\] \(written by an older conversion\)"):
        load_checked_state_dict(model, released, name)
    released.pop(f"{PREFIX}time_embed.0.weight")
    with pytest.raises(InputError, match="time_embed.0.weight"):
        load_checked_state_dict(model, released, name)


def test_pos_table_is_fixed_and_layout_matches_reference():
    model = build_tiny()
    table = model.get_mixin("pos_embed").pos_embedding
    assert not table.requires_grad
    assert torch.count_nonzero(table[0, :16]) == 0  # text rows
    # first video row: t = h = w = 0 -> every block is [sin 0 ... | cos 0 ...] = [0.. | 1..]
    row = table[0, 16]
    d = row.shape[0]
    blocks = [row[: d // 4], row[d // 4 : d // 4 + 3 * d // 8], row[d // 4 + 3 * d // 8 :]]
    for block in blocks:
        half = block.shape[0] // 2
        assert torch.all(block[:half] == 0) and torch.all(block[half:] == 1)
    # moving one step in w changes the w block (the 2nd), not the h block (the 3rd)
    step_w = table[0, 17]
    assert torch.equal(step_w[d // 4 + 3 * d // 8 :], blocks[2])
    assert step_w[d // 4] == pytest.approx(torch.sin(torch.tensor(1 / 1.875)).item(), abs=1e-6)


def test_pos_table_equals_diffusers_table():
    from diffusers.models.embeddings import CogVideoXPatchEmbed

    model = build_tiny()
    theirs = CogVideoXPatchEmbed(
        patch_size=2, in_channels=16, embed_dim=64, text_embed_dim=32, sample_width=12, sample_height=8,
        sample_frames=9, max_text_seq_length=16, spatial_interpolation_scale=1.875,
    ).pos_embedding.float()
    torch.testing.assert_close(model.get_mixin("pos_embed").pos_embedding.data, theirs, rtol=0, atol=1e-6)


def test_timestep_embedding_is_cos_first_like_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding

    from dit.timestep import timestep_embedding

    steps = torch.tensor([0, 1, 499, 999])
    ours = timestep_embedding(steps, 64)
    assert torch.equal(ours[0, :32], torch.ones(32))  # cos(0) first
    theirs = get_timestep_embedding(steps, 64, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


# CogVideoX1.5 (patch_size [2, 2, 2]): the released files as they are (configs/ = the released yamls byte for byte)
RELEASED_1_5 = {
    "1.5": ("configs/cogvideox1.5_5b.yaml", "cogvideox1.5-5b-transformer", 773),
    "1.5_i2v": ("configs/cogvideox1.5_5b_i2v.yaml", "cogvideox1.5-5b-i2v-transformer", 777),
}


@pytest.mark.parametrize("name", list(RELEASED_1_5))
def test_15_keys_shapes_and_order_match_release(name):
    """No rotary tables in the state dict (computed per input), the Linear patch embedding [3072, c*8], SAT's unused
    position_embeddings still there, the I2V ofs_embed last."""
    config, keys, count = RELEASED_1_5[name]
    got = schema(build_meta(config))
    assert list(got.items()) == list(read_keys(f"tests/data/{keys}.keys.tsv").items())
    assert len(got) == count
    assert not any("freqs" in key for key in got)


@pytest.mark.parametrize("name", list(RELEASED_1_5))
def test_15_released_layout_loads_strictly(name):
    """A full-size checkpoint with exactly the released 773 / 777 keys passes our checked load; a missing key fails."""
    from input_errors import InputError
    from checkpoints.sat_checkpoint import load_checked_state_dict

    config, keys, _ = RELEASED_1_5[name]
    model = ReleasedLayout(build_meta(config))
    released = {key: torch.empty(shape, device="meta") for key, shape in read_keys(f"tests/data/{keys}.keys.tsv").items()}
    load_checked_state_dict(model, released, name)
    released.pop(f"{PREFIX}mixins.patch_embed.proj.bias")
    with pytest.raises(InputError, match="patch_embed.proj.bias"):
        load_checked_state_dict(model, released, name)
