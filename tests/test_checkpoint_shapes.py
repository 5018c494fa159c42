"""A checkpoint made for another model size: one InputError naming the file, the first keys and both shapes."""

import pytest
import torch

from input_errors import InputError
from checkpoints.sat_checkpoint import load_sat_checkpoint, save_sat_checkpoint
from sgm.util import instantiate_from_config
from test_dit_support import TinyEngine, tiny_network_config
from test_vae import TINY_CONFIG, vae_config


def tiny_dit(variant: str, hidden_size: int = 64) -> torch.nn.Module:
    config = tiny_network_config(variant)
    config["params"]["hidden_size"] = hidden_size
    return instantiate_from_config(config)


@pytest.mark.parametrize("variant, allow_missing_lora", [("basic", False), ("lora", True)])  # sampling; LoRA training
def test_transformer_for_another_size_names_file_keys_and_shapes(tmp_path, variant, allow_missing_lora):
    save_sat_checkpoint(TinyEngine(tiny_dit("basic", hidden_size=128)).state_dict(), tmp_path / "big", 1)
    with pytest.raises(InputError) as error:
        load_sat_checkpoint(TinyEngine(tiny_dit(variant)), tmp_path / "big", allow_missing_lora=allow_missing_lora)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'big' / '1' / 'mp_rank_00_model_states.pt'}: ")
    assert "model.diffusion_model.mixins.patch_embed.proj.weight: file [128, 16, 2, 2], model [64, 16, 2, 2]" in message
    assert message.count("file [") == 3 and "... and" in message


def test_lora_routed_base_weight_of_another_shape_is_named(tmp_path):
    """SAT's LoRA layers load `<layer>.weight` into `<layer>.original.weight`: that pair is compared too."""
    base = {key.replace(".original", ""): value for key, value in TinyEngine(tiny_dit("lora")).state_dict().items()
            if "matrix_" not in key}
    key = "model.diffusion_model.transformer.layers.0.attention.query_key_value.weight"
    base[key] = torch.zeros(3 * 64, 32)
    save_sat_checkpoint(base, tmp_path / "base", 1)
    with pytest.raises(InputError, match=rf"1 weight\(s\).*{key}: file \[192, 32\], model \[192, 64\]$"):
        load_sat_checkpoint(TinyEngine(tiny_dit("lora")), tmp_path / "base", allow_missing_lora=True)


def test_vae_file_for_another_size_names_file_keys_and_shapes(tmp_path):
    config = vae_config(TINY_CONFIG)
    for part in ("encoder_config", "decoder_config"):
        config["params"][part]["params"]["ch"] = 64
    torch.save({"state_dict": instantiate_from_config(config).state_dict()}, tmp_path / "3d-vae.pt")
    with pytest.raises(InputError) as error:
        instantiate_from_config(vae_config(TINY_CONFIG, ckpt_path=str(tmp_path / "3d-vae.pt")))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / '3d-vae.pt'}: ") and "another model size" in message
    assert "encoder.conv_in.conv.weight: file [64, 3, 3, 3, 3], model [32, 3, 3, 3, 3]" in message


@pytest.mark.parametrize(
    "config, keys, file_family, patch_embed, only_file, only_model",
    [
        ("configs/cogvideox1.5_5b.yaml", "cogvideox-5b-transformer", "CogVideoX 1.0",
         "file [3072, 16, 2, 2], model [3072, 128]", "mixins.pos_embed.freqs_sin", None),
        ("configs/cogvideox1.5_5b_i2v.yaml", "cogvideox-5b-i2v-transformer", "CogVideoX 1.0",
         "file [3072, 32, 2, 2], model [3072, 256]", "mixins.pos_embed.pos_embedding", "ofs_embed.0.weight"),
        ("configs/cogvideox_5b.yaml", "cogvideox1.5-5b-transformer", "CogVideoX1.5",
         "file [3072, 128], model [3072, 16, 2, 2]", None, "mixins.pos_embed.freqs_sin"),
        ("tests/data/v1.0_cogvideox_5b_i2v.yaml", "cogvideox1.5-5b-i2v-transformer", "CogVideoX1.5",
         "file [3072, 256], model [3072, 32, 2, 2]", "ofs_embed.0.weight", "mixins.pos_embed.pos_embedding"),
    ],
)
def test_checkpoint_of_the_other_family_is_one_message(config, keys, file_family, patch_embed, only_file, only_model):
    """A released 1.0 transformer (its keys and shapes) with a 1.5 config, and the reverse: one InputError naming the
    file, both families, the first mismatched shapes and the keys only one side has."""
    from checkpoints.sat_checkpoint import load_checked_state_dict
    from test_dit_schema import ReleasedLayout, build_meta, read_keys

    model = ReleasedLayout(build_meta(config))
    released = {key: torch.empty(shape, device="meta") for key, shape in read_keys(f"tests/data/{keys}.keys.tsv").items()}
    with pytest.raises(InputError) as error:
        load_checked_state_dict(model, released, "ckpt/1000/mp_rank_00_model_states.pt")
    message = str(error.value)
    assert message.startswith(f"ckpt/1000/mp_rank_00_model_states.pt: a {file_family} ")
    assert "but the config builds a CogVideoX" in message
    assert f"model.diffusion_model.mixins.patch_embed.proj.weight: {patch_embed}" in message
    file_part, model_part = message.split("keys only in the file: ")[1].split("; keys only in the model: ")
    assert (f"model.diffusion_model.{only_file}" in file_part) if only_file else file_part == "[]"
    assert (f"model.diffusion_model.{only_model}" in model_part) if only_model else model_part == "[]"
