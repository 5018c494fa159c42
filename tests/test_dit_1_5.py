"""The CogVideoX1.5 DiT (``patch_size: [2, 2, 2]``, the shipped tiny 1.5 configs) == diffusers' CogVideoXTransformer3DModel
(``patch_size_t`` 2, sliced rotary tables, ``ofs_embed_dim``) on converted weights, fp32, for several even latent frame
counts and several heights/widths within the rotary table; and the parts that make it so."""

import hashlib

import pytest
import torch
from einops import rearrange

from dit.patching import PatchSize
from dit.rotary_table import SlicedRotaryTable, rotary_angles
from test_dit_support import build_tiny, diffusers_forward, diffusers_from, tiny_inputs

# sha256 of the released files (the public repository's sat/configs at e519ece), which configs/ ships unchanged
RELEASED_15_CONFIGS = {
    "configs/cogvideox1.5_5b.yaml": "8ebf891acc6c485c3cf799d27d0165dae2e56e9590c663622f04d1b7b3ea3a5f",
    "configs/cogvideox1.5_5b_i2v.yaml": "f4e360f1aa4a04c436caaed9c5cc0fe2b0b72c36e56cf43c954f351de2dd166d",
    "configs/inference_1.5.yaml": "1b750e98b31205af142faa60581eeb33a95936d56e9bb3d25bfed8a9d6d8d650",
}
# (latent frames, height, width): the table is 42 frames (21 temporal patches) x 16 x 24 latents
GRIDS = [(2, 16, 24), (4, 8, 12), (6, 4, 20), (8, 16, 8), (42, 4, 4)]


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.parametrize("frames, height, width", GRIDS)
@pytest.mark.parametrize("variant", ["v15", "v15_i2v"])
def test_forward_matches_diffusers(variant, frames, height, width):
    model = build_tiny(variant)
    reference = diffusers_from(model, variant)
    x, timesteps, context = tiny_inputs(frames=frames, channels=model.in_channels, height=height, width=width)
    ofs = torch.tensor([2.0]) if variant == "v15_i2v" else None  # (1,), broadcast over the batch as sampling passes it
    with torch.no_grad():
        ours = model(x, timesteps, context, ofs=ofs)
        theirs = diffusers_forward(reference, x, timesteps, context, ofs=ofs)
    assert ours.shape == (2, frames, 16, height, width)
    assert relative_error(ours, theirs) <= 1e-5


def test_i2v_per_sample_ofs_and_any_text_length_match_diffusers():
    """ofs of shape (b,) with different values, and a context of 7 tokens (the text length comes from the context)."""
    model = build_tiny("v15_i2v")
    reference = diffusers_from(model, "v15_i2v")
    x, timesteps, _ = tiny_inputs(frames=4, channels=32)
    context = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(4))
    ofs = torch.tensor([2.0, 0.5])
    with torch.no_grad():
        ours = model(x, timesteps, context, ofs=ofs)
        theirs = diffusers_forward(reference, x, timesteps, context, ofs=ofs)
    assert relative_error(ours, theirs) <= 1e-5


def test_ofs_and_image_channels_change_the_output():
    """The I2V comparisons are not vacuous: ofs and the 16 image channels both enter."""
    model = build_tiny("v15_i2v")
    x, timesteps, context = tiny_inputs(frames=4, channels=32)
    with torch.no_grad():
        ours = model(x, timesteps, context, ofs=torch.tensor([2.0]))
        other_ofs = model(x, timesteps, context, ofs=torch.tensor([1.0]))
        without_image = model(torch.cat((x[:, :, :16], torch.zeros_like(x[:, :, 16:])), dim=2), timesteps, context, ofs=torch.tensor([2.0]))
    assert (ours - other_ofs).abs().max() > 1e-3 * ours.abs().max()
    assert (ours - without_image).abs().max() > 1e-2 * ours.abs().max()


def test_patch_tokens_follow_the_reference_rearranges():
    """Token order (t', h', w') and features (c, o, p, q), as the reference's two rearranges; un-patching inverts it."""
    from dit.final_layer import unpatchify

    model = build_tiny("v15")
    proj = model.get_mixin("patch_embed").proj
    x = torch.randn(2, 4, 16, 8, 12)
    grid = dict(t=2, h=4, w=6)
    blocks = rearrange(rearrange(x, "b t c h w -> b (t h w) c"), "b (t o h p w q) c -> b (t h w) (c o p q)", o=2, p=2, q=2, **grid)
    with torch.no_grad():
        torch.testing.assert_close(proj(x), torch.nn.functional.linear(blocks, proj.weight, proj.bias), rtol=0, atol=0)
    assert proj.weight.shape == (64, 16 * 8)
    assert torch.equal(unpatchify(blocks, 16, PatchSize(2, 2, 2, True), 2, 4, 6), x)


def test_sliced_table_is_the_3d_slice_of_the_full_table():
    """As the reference: the [T, H, W, head] table sliced [:T', :H', :W'] and flattened (t h w); not the flat slice."""
    full = rotary_angles(21, 8, 12, 32).reshape(21, 8, 12, 32)
    cos, sin = SlicedRotaryTable(None, 21, 8, 12, 32, 10000.0).cos_sin((3, 5, 7), torch.device("cpu"))
    expected = full[:3, :5, :7].reshape(-1, 32)
    assert cos.dtype == torch.float32 and cos.shape == (3 * 5 * 7, 32)
    torch.testing.assert_close(cos, expected.cos(), rtol=0, atol=0)
    torch.testing.assert_close(sin, expected.sin(), rtol=0, atol=0)
    assert not torch.equal(cos, full.reshape(-1, 32)[: 3 * 5 * 7].cos())  # the 1.0 flat slice differs off the full grid


def test_no_table_is_state_and_casting_leaves_it_fp32():
    """Released 1.5 files have no freqs keys; the tables are fp32 at use even in a bf16-cast model."""
    model = build_tiny("v15")
    assert not any("freqs" in key for key in model.state_dict())
    half = build_tiny("v15").bfloat16()
    cos, _ = half.get_mixin("pos_embed").table.cos_sin((1, 2, 3), torch.device("cpu"))
    assert cos.dtype == torch.float32


def test_bf16_engine_cast_runs_close_to_fp32():
    from sgm.util import instantiate_from_config
    from test_dit_support import tiny_network_config

    model = build_tiny("v15_i2v")
    config = tiny_network_config("v15_i2v")
    config["params"]["dtype"] = "bf16"
    half = instantiate_from_config(config)
    half.load_state_dict(model.state_dict())
    half = half.bfloat16().eval()
    x, timesteps, context = tiny_inputs(frames=4, channels=32)
    with torch.no_grad():
        full, low = model(x, timesteps, context, ofs=torch.tensor([2.0])), half(x, timesteps, context, ofs=torch.tensor([2.0]))
    assert low.dtype == torch.bfloat16
    assert (low.float() - full).abs().max() <= 0.05 * full.abs().max()


@pytest.mark.parametrize(
    "variant, change, message",
    [
        ("v15", lambda x, t, c, o: (x[:, :3], t, c, o), "3 latent frames cannot be cut into temporal patches of 2"),
        ("v15", lambda x, t, c, o: (torch.cat([x] * 11, 1), t, c, o), "latent frames at most 42"),
        ("v15", lambda x, t, c, o: (torch.cat([x, x, x], 3), t, c, o), "latent height at most 16"),
        ("v15", lambda x, t, c, o: (x[..., :11], t, c, o), "not divisible by the patch (2, 2)"),
        ("v15", lambda x, t, c, o: (x, t, c, torch.tensor([2.0])), "has no ofs embedding"),
        ("v15", lambda x, t, c, o: (x, t, c[..., :8], o), "context must have shape (2, n_text, 32)"),
        ("v15_i2v", lambda x, t, c, o: (x, t, c, None), "needs ofs of shape (1,) or (2,)"),
        ("v15_i2v", lambda x, t, c, o: (x, t, c, torch.ones(3)), "needs ofs of shape (1,) or (2,)"),
    ],
)
def test_bad_inputs_raise(variant, change, message):
    model = build_tiny(variant)
    x, timesteps, context = tiny_inputs(frames=4, channels=model.in_channels)
    ofs = torch.tensor([2.0]) if variant == "v15_i2v" else None
    x, timesteps, context, ofs = change(x, timesteps, context, ofs)
    with pytest.raises(ValueError) as error:
        model(x, timesteps, context, ofs=ofs)
    assert message in str(error.value)


@pytest.mark.parametrize("fixture, keys", [("tiny_15_models", "cogvideox1.5-5b-transformer"), ("tiny_15_i2v_models", "cogvideox1.5-5b-i2v-transformer")])
def test_tiny_weights_have_the_released_layout(request, fixture, keys):
    """tools/make_tiny_weights.py writes the released 1.5 key list, in order, at tiny sizes (2 layers); it loads."""
    import re

    from checkpoints.sat_checkpoint import composed_module_states
    from test_dit_schema import read_keys
    from tiny_models import build_engine

    models = request.getfixturevalue(fixture)
    state, _ = composed_module_states(str(models.transformer))
    released = [key for key in read_keys(f"tests/data/{keys}.keys.tsv") if not re.search(r"(layers|list|modulations)\.([2-9]|\d\d)\.", key)]
    assert [key for key in state if key.startswith("model.diffusion_model.")] == released
    assert state["model.diffusion_model.mixins.patch_embed.proj.weight"].shape == (64, 8 * (32 if "i2v" in fixture else 16))
    build_engine(models)  # the checked load: no missing or unexpected key


@pytest.mark.parametrize("path", list(RELEASED_15_CONFIGS))
def test_shipped_15_configs_are_the_released_bytes(path):
    with open(path, "rb") as file:
        assert hashlib.sha256(file.read()).hexdigest() == RELEASED_15_CONFIGS[path]
