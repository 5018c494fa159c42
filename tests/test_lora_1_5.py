"""LoRA tools on CogVideoX1.5 (tiny T2V and I2V): tools/merge_lora.py's merged checkpoint reproduces the LoRA model,
and its diffusers/peft export, loaded into diffusers' 1.5 transformer as an adapter, does too."""

import pytest
import torch
from safetensors.torch import load_file

from checkpoints.sat_checkpoint import load_sat_checkpoint, save_sat_checkpoint
from test_dit_support import LORA_R, TinyEngine, build_tiny, diffusers_forward, tiny_inputs
from tools import merge_lora
from interop.sat_to_diffusers import SAT_PREFIX, diffusers_config, sat_to_diffusers_state_dict
from test_convert_transformer import write_sat_yaml
from test_dit_support import tiny_network_config


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.parametrize("variant", ["v15_lora", "v15_i2v_lora"])
def test_merge_and_peft_export_reproduce_the_lora_model(tmp_path, variant):
    from diffusers import CogVideoXTransformer3DModel

    lora = build_tiny(variant)
    base_variant = variant.removesuffix("_lora")
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in lora.state_dict().items()}, tmp_path / "lora", 5)
    merge_lora.main(["--config", str(write_sat_yaml(tmp_path, variant)), "--checkpoint", str(tmp_path / "lora"),
                     "--output", str(tmp_path / "merged"), "--export-lora", str(tmp_path / "peft")])
    x, timesteps, context = tiny_inputs(frames=4, channels=lora.in_channels)
    ofs = torch.tensor([2.0]) if "i2v" in variant else None
    with torch.no_grad():
        expected = lora(x, timesteps, context, ofs=ofs)

    # 1. the merged SAT checkpoint, loaded into the plain 1.5 model (released keys, no LoRA)
    plain = TinyEngine(build_tiny(base_variant, seed=1))
    assert load_sat_checkpoint(plain, tmp_path / "merged") == 5
    with torch.no_grad():
        assert relative_error(plain.model.diffusion_model(x, timesteps, context, ofs=ofs), expected) <= 1e-5

    # 2. the peft file as a diffusers adapter on the base weights (peft scale 1: SAT's 1/r folded into lora_B)
    config = diffusers_config(tiny_network_config(base_variant))
    reference = CogVideoXTransformer3DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    base = {k.replace(".original", ""): v for k, v in lora.state_dict().items() if ".matrix_" not in k}
    reference.load_state_dict(sat_to_diffusers_state_dict(base), strict=True)
    exported = load_file(str(tmp_path / "peft" / "pytorch_lora_weights.safetensors"))
    assert len(exported) == 2 * 4 * 2  # layers x (q, k, v, out) x (A, B)
    with torch.no_grad():
        without = diffusers_forward(reference.eval(), x, timesteps, context, ofs=ofs)
        reference.load_lora_adapter(exported, prefix="transformer", adapter_name="sat")
        with_adapter = diffusers_forward(reference.eval(), x, timesteps, context, ofs=ofs)
    assert relative_error(with_adapter, expected) <= 1e-5
    assert relative_error(without, expected) > 1e-3  # the adapter is what closes the gap (100x the tolerance)
