"""LoRA tools for 5B and 5B-I2V: the rank (and so the scale 1/r) comes from the config; merge and peft export of an
I2V LoRA model reproduce its output."""

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from checkpoints.sat_checkpoint import load_sat_checkpoint, save_sat_checkpoint
from sgm.util import instantiate_from_config
from test_dit_support import TinyEngine
from tools import merge_lora
from interop.sat_to_diffusers import SAT_PREFIX, lora_params, sat_to_diffusers_state_dict

TINY_I2V, TINY_I2V_LORA = "configs/tiny/cogvideox_tiny_i2v.yaml", "configs/tiny/cogvideox_tiny_i2v_lora.yaml"


@pytest.mark.parametrize(
    "path, rank",
    [("tests/data/v1.0_cogvideox_5b_lora.yaml", 128), ("tests/data/v1.0_cogvideox_5b_i2v_lora.yaml", 256),
     ("configs/cogvideox_5b_i2v_lora.yaml", 256), (TINY_I2V_LORA, 16)],
)
def test_rank_and_scale_come_from_the_config(path, rank):
    assert lora_params(OmegaConf.to_container(OmegaConf.load(path), resolve=True)) == (rank, 1.0)


def build_network(path: str, seed: int) -> torch.nn.Module:
    """The tiny network of `path` with every trainable parameter perturbed (LoRA B matrices included)."""
    network = instantiate_from_config(OmegaConf.to_container(OmegaConf.load(path).model.network_config, resolve=True))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in network.named_parameters():
            param.add_(torch.randn_like(param) * (1.0 if "matrix_B" in name else 0.05))
    return network.eval()


def test_merged_i2v_lora_matches_the_lora_model_and_peft_export_folds_1_over_r(tmp_path):
    lora = build_network(TINY_I2V_LORA, seed=0)
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in lora.state_dict().items()}, tmp_path / "lora", 5)
    merge_lora.main(["--config", TINY_I2V_LORA, "--checkpoint", str(tmp_path / "lora"), "--output", str(tmp_path / "merged"),
                     "--export-lora", str(tmp_path / "peft")])
    plain = TinyEngine(build_network(TINY_I2V, seed=1))
    assert load_sat_checkpoint(plain, tmp_path / "merged") == 5
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 32, 8, 12, generator=generator)  # (b, t, noisy 16 + image 16, h, w)
    context, timesteps = torch.randn(2, 226, 32, generator=generator), torch.tensor([100, 700])
    with torch.no_grad():
        merged_out = plain.model.diffusion_model(x, timesteps, context)
        torch.testing.assert_close(merged_out, lora(x, timesteps, context), atol=1e-4, rtol=0)

    exported = load_file(str(tmp_path / "peft" / "pytorch_lora_weights.safetensors"))
    lora_state = lora.state_dict()
    b_q = lora_state["transformer.layers.1.attention.query_key_value.matrix_B.0"]
    torch.testing.assert_close(exported["transformer.transformer_blocks.1.attn1.to_q.lora_B.weight"], b_q / 16)
    base = {k.replace(".original", ""): v for k, v in lora_state.items() if ".matrix_" not in k}
    base_hf = sat_to_diffusers_state_dict(base, learned_positional_embedding=True)
    merged_hf = sat_to_diffusers_state_dict(plain.model.diffusion_model.state_dict(), learned_positional_embedding=True)
    for key in (k for k in exported if k.endswith("lora_A.weight")):
        stem = key[len("transformer.") : -len(".lora_A.weight")]
        rebuilt = base_hf[stem + ".weight"] + exported[key.replace("lora_A", "lora_B")] @ exported[key]
        torch.testing.assert_close(rebuilt, merged_hf[stem + ".weight"], atol=1e-6, rtol=0)
