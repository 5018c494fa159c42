"""Helpers shared by the DiT / conversion / checkpoint tests (no tests here).

A tiny CogVideoX network config derived from ``configs/tiny/cogvideox_tiny.yaml`` (2 layers,
hidden 64, 2 heads of 32, 3 latent frames of 8x12, 16 text tokens), random perturbation of every
parameter so that no zero/one init hides a mapping bug, and a diffusers model on converted weights.
"""

import copy

import torch
from omegaconf import OmegaConf

from sgm.util import instantiate_from_config
from tools.convert_weight_sat2hf import diffusers_config, merge_lora_state_dict, sat_to_diffusers_state_dict

TINY_YAML = "configs/tiny/cogvideox_tiny.yaml"
TEXT_LENGTH = 16
LORA_R = 4


def tiny_network_config(variant: str = "basic") -> dict:
    """``model.network_config`` of the tiny model: variant "basic" (2B style), "lora", "rotary" (5B style) or "i2v"
    (5B-I2V style: rotary plus the learned position table, 32 input channels)."""
    config = OmegaConf.to_container(OmegaConf.load(TINY_YAML), resolve=True)["model"]["network_config"]
    params = config["params"]
    params["num_frames"] = 9  # 3 latent frames
    modules = params["modules"]
    modules["pos_embed_config"]["params"]["text_length"] = TEXT_LENGTH
    if variant in ("rotary", "i2v"):
        modules["pos_embed_config"] = {
            "target": "dit_video_concat.Rotary3DPositionEmbeddingMixin",
            "params": {"hidden_size_head": params["hidden_size"] // params["num_attention_heads"], "text_length": TEXT_LENGTH},
        }
    if variant == "i2v":
        modules["pos_embed_config"]["params"]["learnable_pos_embed"] = True
        params["in_channels"] = 2 * params["out_channels"]
    if variant == "lora":
        modules["lora_config"] = {"target": "sat.model.finetune.lora2.LoraMixin", "params": {"r": LORA_R}}
    return config


def build_tiny(variant: str = "basic", seed: int = 0) -> torch.nn.Module:
    """The tiny DiT with every trainable parameter perturbed (seeded); the fixed pos table untouched."""
    model = instantiate_from_config(tiny_network_config(variant))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * (1.0 if "matrix_B" in name else 0.05))
    return model.eval()


def tiny_inputs(batch: int = 2, frames: int = 3, seed: int = 1, channels: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (b, t, channels, 8, 12), timesteps (b,) long, context (b, 16, 32)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, channels, 8, 12, generator=generator)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    context = torch.randn(batch, TEXT_LENGTH, 32, generator=generator)
    return x, timesteps, context


def diffusers_from(model: torch.nn.Module, variant: str = "basic") -> torch.nn.Module:
    """A diffusers ``CogVideoXTransformer3DModel`` holding ``model``'s weights (LoRA merged)."""
    from diffusers import CogVideoXTransformer3DModel

    config = diffusers_config(tiny_network_config(variant))
    reference = CogVideoXTransformer3DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    state_dict = copy.deepcopy(model.state_dict())
    if variant == "lora":
        state_dict = merge_lora_state_dict(state_dict, r=LORA_R)
    reference.load_state_dict(sat_to_diffusers_state_dict(state_dict, config["use_learned_positional_embeddings"]), strict=True)
    return reference.eval()


def diffusers_forward(reference: torch.nn.Module, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Run diffusers' transformer like its pipeline does (rotary tables computed for the 5B style)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    rotary = None
    if reference.config.use_rotary_positional_embeddings:
        p = reference.config.patch_size
        grid = (x.shape[3] // p, x.shape[4] // p)
        rotary = get_3d_rotary_pos_embed(
            reference.config.attention_head_dim, ((0, 0), grid), grid_size=grid, temporal_size=x.shape[1], use_real=True
        )
    return reference(x, context, timesteps, image_rotary_emb=rotary, return_dict=False)[0]


class TinyEngine(torch.nn.Module):
    """Stands in for the diffusion engine's key layout: ``model.diffusion_model.*`` plus a ``conditioner``."""

    def __init__(self, dit: torch.nn.Module):
        super().__init__()
        from sgm.modules.diffusionmodules.wrappers import OpenAIWrapper

        self.model = OpenAIWrapper(dit)
        self.conditioner = torch.nn.Linear(2, 2)
