"""SAT <-> diffusers conversion: round trips are exact, folders load in diffusers, LoRA merge/export."""

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from input_errors import InputError
from checkpoints.sat_checkpoint import load_sat_checkpoint, save_sat_checkpoint
from test_dit_support import LORA_R, TinyEngine, build_tiny, diffusers_forward, tiny_inputs, tiny_network_config
from tools import convert_weight_hf2sat, convert_weight_sat2hf
from interop.sat_to_diffusers import (
    SAT_PREFIX,
    diffusers_config,
    lora_to_diffusers_peft,
    merge_lora_state_dict,
    sat_to_diffusers_state_dict,
)
from interop.diffusers_to_sat import diffusers_to_sat_state_dict


def write_sat_yaml(tmp_path, variant):
    path = tmp_path / f"{variant}.yaml"
    OmegaConf.save({"model": {"network_config": tiny_network_config(variant)}}, path)
    return path


@pytest.mark.parametrize("variant", ["basic", "rotary", "i2v", "v15", "v15_i2v"])
def test_state_dict_round_trip_is_exact(variant):
    """Rotary tables are recomputed on the way back (equal to the built ones); the I2V learned table travels; 1.5 has
    no tables either side and its ofs embedding travels."""
    sat = build_tiny(variant).state_dict()
    config = diffusers_config(tiny_network_config(variant))
    hf = sat_to_diffusers_state_dict(sat, config["use_learned_positional_embeddings"])
    assert ("patch_embed.pos_embedding" in hf) == (variant == "i2v")
    back = diffusers_to_sat_state_dict(hf, config)
    assert ("ofs_embedding.linear_1.weight" in hf) == (variant == "v15_i2v")
    if variant != "basic":  # SAT's unused learned table has no diffusers counterpart; written as zeros
        assert torch.count_nonzero(back.pop("transformer.position_embeddings.weight")) == 0
        sat = {k: v for k, v in sat.items() if k != "transformer.position_embeddings.weight"}
    assert set(back) == set(sat)
    for key in sat:
        assert torch.equal(back[key], sat[key]), key


@pytest.mark.parametrize("variant", ["basic", "lora", "i2v", "v15", "v15_i2v_lora"])
def test_cli_sat_to_diffusers_to_sat(tmp_path, variant):
    """SAT folder -> (CLI) diffusers folder that from_pretrained loads -> (CLI) SAT folder that loads back."""
    from diffusers import CogVideoXTransformer3DModel

    model = build_tiny(variant)
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in model.state_dict().items()}, tmp_path / "sat", 7)
    argv = ["--sat-config", str(write_sat_yaml(tmp_path, variant)), "--checkpoint", str(tmp_path / "sat"), "--output", str(tmp_path / "hf")]
    if variant.endswith("lora"):
        with pytest.raises(InputError, match="holds LoRA matrices: pass --merge-lora"):
            convert_weight_sat2hf.main(argv)
        argv += ["--merge-lora", "--export-lora", str(tmp_path / "lora")]
    convert_weight_sat2hf.main(argv)
    reference = CogVideoXTransformer3DModel.from_pretrained(tmp_path / "hf").eval()
    assert reference.config.in_channels == model.in_channels
    x, timesteps, context = tiny_inputs(frames=4 if variant.startswith("v15") else 3, channels=model.in_channels)
    ofs = torch.tensor([2.0]) if variant.startswith("v15_i2v") else None
    with torch.no_grad():
        ours = model(x, timesteps, context, ofs=ofs)
        theirs = diffusers_forward(reference, x, timesteps, context, ofs=ofs)
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()

    convert_weight_hf2sat.main(["--diffusers", str(tmp_path / "hf"), "--output", str(tmp_path / "back"), "--iteration", "3"])
    fresh = TinyEngine(build_tiny({"lora": "basic"}.get(variant, variant.removesuffix("_lora")), seed=5))
    assert load_sat_checkpoint(fresh, tmp_path / "back") == 3
    expected = merge_lora_state_dict(model.state_dict(), LORA_R) if variant.endswith("lora") else model.state_dict()
    for key, value in fresh.model.diffusion_model.state_dict().items():
        if key == "transformer.position_embeddings.weight":  # SAT's unused table of the rotary variant: zeros
            assert torch.count_nonzero(value) == 0
            continue
        assert torch.equal(value, expected[key]), key


def test_peft_lora_export_folds_the_scale():
    """W0 + B' @ A' from the exported file (peft scale 1) == SAT's W0 + (B @ A) / r, per q, k, v and dense."""
    sd = build_tiny("lora").state_dict()
    merged = sat_to_diffusers_state_dict(merge_lora_state_dict(sd, LORA_R))
    base = sat_to_diffusers_state_dict({k.replace(".original", ""): v for k, v in sd.items() if ".matrix_" not in k})
    lora = lora_to_diffusers_peft(sd, LORA_R)
    assert len(lora) == 2 * 4 * 2  # layers x (q, k, v, out) x (A, B)
    for key in merged:
        if ".attn1.to_" not in key or not key.endswith(".weight"):
            continue
        stem = "transformer." + key[: -len(".weight")]
        rebuilt = base[key] + lora[f"{stem}.lora_B.weight"] @ lora[f"{stem}.lora_A.weight"]
        torch.testing.assert_close(rebuilt, merged[key], rtol=1e-5, atol=1e-6, msg=key)
        assert not torch.allclose(base[key], merged[key])


def test_cli_exported_lora_file_has_peft_keys(tmp_path):
    model = build_tiny("lora")
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in model.state_dict().items()}, tmp_path / "sat", 1)
    convert_weight_sat2hf.main(
        ["--sat-config", str(write_sat_yaml(tmp_path, "lora")), "--checkpoint", str(tmp_path / "sat"),
         "--output", str(tmp_path / "hf"), "--merge-lora", "--export-lora", str(tmp_path / "lora")]
    )
    keys = set(load_file(str(tmp_path / "lora" / "pytorch_lora_weights.safetensors")))
    assert "transformer.transformer_blocks.1.attn1.to_v.lora_B.weight" in keys
    assert "transformer.transformer_blocks.0.attn1.to_out.0.lora_A.weight" in keys


def test_unknown_key_is_reported():
    sd = build_tiny().state_dict()
    sd["mixins.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="mixins.extra.weight"):
        sat_to_diffusers_state_dict(sd)


def test_unmerged_lora_is_refused():
    with pytest.raises(ValueError, match="merge"):
        sat_to_diffusers_state_dict(build_tiny("lora").state_dict())


def test_exported_lora_without_merge_loads_into_the_base_with_diffusers_load_lora_weights(tmp_path, capsys):
    """--export-lora alone: --output is the base transformer (W0) and DIR the adapter; diffusers' pipeline
    load_lora_weights (peft) puts them together into the merged model's function."""
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    model = build_tiny("lora")
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in model.state_dict().items()}, tmp_path / "sat", 1)
    common = ["--sat-config", str(write_sat_yaml(tmp_path, "lora")), "--checkpoint", str(tmp_path / "sat")]
    convert_weight_sat2hf.main([*common, "--output", str(tmp_path / "base"), "--export-lora", str(tmp_path / "adapter")])
    assert capsys.readouterr().out.splitlines() == [
        f"wrote base transformer (64 tensors) to {tmp_path / 'base'}",
        f"wrote the diffusers/peft LoRA to {tmp_path / 'adapter' / 'pytorch_lora_weights.safetensors'}"]
    convert_weight_sat2hf.main([*common, "--output", str(tmp_path / "merged"), "--merge-lora"])

    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None,
                             transformer=CogVideoXTransformer3DModel.from_pretrained(tmp_path / "base").eval())
    x, timesteps, context = tiny_inputs(channels=model.in_channels)
    with torch.no_grad():
        base_only = diffusers_forward(pipe.transformer, x, timesteps, context)
        pipe.load_lora_weights(str(tmp_path / "adapter"))
        with_adapter = diffusers_forward(pipe.transformer, x, timesteps, context)
        merged = diffusers_forward(CogVideoXTransformer3DModel.from_pretrained(tmp_path / "merged").eval(), x, timesteps, context)
        ours = model(x, timesteps, context)
    assert (with_adapter - merged).abs().max() <= 1e-5 * merged.abs().max()
    assert (ours - merged).abs().max() <= 1e-4 * merged.abs().max()
    assert (base_only - merged).abs().max() > 1e-2 * merged.abs().max()  # the adapter is what makes the difference


@pytest.mark.parametrize("checkpoint_variant, config_variant, message", [
    ("basic", "rotary", "1 key(s) not in that model: ['mixins.pos_embed.pos_embedding']"),
    ("rotary", "basic", "3 key(s) not in that model: ['mixins.pos_embed.freqs_sin', 'mixins.pos_embed.freqs_cos', "
                        "'transformer.position_embeddings.weight']; 1 key(s) of that model missing: ['mixins.pos_embed.pos_embedding']"),
    ("i2v", "rotary", "1 key(s) not in that model: ['mixins.pos_embed.pos_embedding']"),
])
def test_checkpoint_of_another_family_is_refused_before_conversion(tmp_path, checkpoint_variant, config_variant, message):
    """A 2B (sin-cos) checkpoint with a rotary config converted silently before (diffusers recomputes both tables)."""
    model = build_tiny(checkpoint_variant)
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in model.state_dict().items()}, tmp_path / "sat", 1)
    config = write_sat_yaml(tmp_path, config_variant)
    with pytest.raises(InputError) as info:
        convert_weight_sat2hf.main(["--sat-config", str(config), "--checkpoint", str(tmp_path / "sat"), "--output", str(tmp_path / "hf")])
    assert str(info.value) == (f"{tmp_path / 'sat'} is not a checkpoint of the model {config} describes "
                               f"(another model family?): {message}")
    assert not (tmp_path / "hf").exists()


def test_rotary_checkpoint_without_tables_converts(tmp_path):
    """Tables dropped by older conversions are not required (the converter drops them anyway)."""
    state = {k: v for k, v in build_tiny("rotary").state_dict().items() if "freqs_" not in k}
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in state.items()}, tmp_path / "sat", 1)
    convert_weight_sat2hf.main(["--sat-config", str(write_sat_yaml(tmp_path, "rotary")), "--checkpoint", str(tmp_path / "sat"),
                                "--output", str(tmp_path / "hf")])
    assert (tmp_path / "hf" / "config.json").is_file()


# The released diffusers transformer configs of CogVideoX1.5-5B and 1.5-5B-I2V (transformer/config.json on the
# Hugging Face hub, less the `_class_name` / `_diffusers_version` entries); the I2V one adds ofs_embed_dim and
# in_channels 32.
RELEASED_15_DIFFUSERS = {
    "activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 64, "dropout": 0.0,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 16, "max_text_seq_length": 226,
    "norm_elementwise_affine": True, "norm_eps": 1e-05, "num_attention_heads": 48, "num_layers": 42, "out_channels": 16,
    "patch_bias": False, "patch_size": 2, "patch_size_t": 2, "sample_frames": 81, "sample_height": 300,
    "sample_width": 300, "spatial_interpolation_scale": 1.875, "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0, "text_embed_dim": 4096, "time_embed_dim": 512, "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": False, "use_rotary_positional_embeddings": True, "ofs_embed_dim": None,
}


@pytest.mark.parametrize("path, changes", [
    ("configs/cogvideox1.5_5b.yaml", {}),
    ("configs/cogvideox1.5_5b_i2v.yaml", {"in_channels": 32, "ofs_embed_dim": 512}),
])
def test_15_diffusers_config_is_the_released_one(path, changes):
    config = diffusers_config(OmegaConf.load(path).model.network_config)
    assert {k: v for k, v in config.items() if not k.startswith("_")} == {**RELEASED_15_DIFFUSERS, **changes}
