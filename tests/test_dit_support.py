"""Helpers shared by the DiT / conversion / checkpoint tests (no tests here).

A tiny CogVideoX network config derived from ``configs/tiny/cogvideox_tiny.yaml`` (2 layers,
hidden 64, 2 heads of 32, 3 latent frames of 8x12, 16 text tokens), random perturbation of every
parameter so that no zero/one init hides a mapping bug, and a diffusers model on converted weights.
"""

import copy

import torch
from omegaconf import OmegaConf

from sgm.util import instantiate_from_config
from interop.sat_to_diffusers import diffusers_config, merge_lora_state_dict, sat_to_diffusers_state_dict

TINY_YAML = "configs/tiny/cogvideox_tiny.yaml"
# CogVideoX1.5-shaped variants: the shipped tiny configs' network, unchanged (rotary table 21 x 8 x 12 tokens).
TINY_15_YAMLS = {"v15": "configs/tiny/cogvideox1.5_tiny.yaml", "v15_i2v": "configs/tiny/cogvideox1.5_tiny_i2v.yaml"}
TEXT_LENGTH = 16
LORA_R = 4


def tiny_network_config(variant: str = "basic") -> dict:
    """``model.network_config`` of the tiny model: variant "basic" (2B style), "lora", "rotary" (5B style), "i2v"
    (5B-I2V style: rotary plus the learned position table, 32 input channels), or "v15" / "v15_i2v" (the shipped
    tiny CogVideoX1.5 configs as they are), "v15_lora" / "v15_i2v_lora" (those with LoRA of rank LORA_R)."""
    if variant.removesuffix("_lora") in TINY_15_YAMLS:
        path = TINY_15_YAMLS[variant.removesuffix("_lora")]
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)["model"]["network_config"]
        if variant.endswith("_lora"):
            config["params"]["modules"]["lora_config"] = {"target": "sat.model.finetune.lora2.LoraMixin", "params": {"r": LORA_R}}
        return config
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


def tiny_inputs(
    batch: int = 2, frames: int = 3, seed: int = 1, channels: int = 16, height: int = 8, width: int = 12
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (b, t, channels, height, width), timesteps (b,) long, context (b, 16, 32)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, channels, height, width, generator=generator)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    context = torch.randn(batch, TEXT_LENGTH, 32, generator=generator)
    return x, timesteps, context


def diffusers_from(model: torch.nn.Module, variant: str = "basic") -> torch.nn.Module:
    """A diffusers ``CogVideoXTransformer3DModel`` holding ``model``'s weights (LoRA merged)."""
    from diffusers import CogVideoXTransformer3DModel

    config = diffusers_config(tiny_network_config(variant))
    reference = CogVideoXTransformer3DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    state_dict = copy.deepcopy(model.state_dict())
    if variant.endswith("lora"):
        state_dict = merge_lora_state_dict(state_dict, r=LORA_R)
    reference.load_state_dict(sat_to_diffusers_state_dict(state_dict, config["use_learned_positional_embeddings"]), strict=True)
    return reference.eval()


def diffusers_forward(
    reference: torch.nn.Module, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, ofs: torch.Tensor | None = None
) -> torch.Tensor:
    """Run diffusers' transformer like its pipelines do: rotary tables for the 5B style (1.0: crop coordinates of the
    configured grid; 1.5: ``grid_type="slice"`` of the table ``sample_height/p x sample_width/p``, as
    ``CogVideoXPipeline._prepare_rotary_positional_embeddings``), ``ofs`` for 1.5-I2V."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    rotary = None
    config = reference.config
    if config.use_rotary_positional_embeddings:
        p = config.patch_size
        grid = (x.shape[3] // p, x.shape[4] // p)
        if config.patch_size_t is None:
            rotary = get_3d_rotary_pos_embed(
                config.attention_head_dim, ((0, 0), grid), grid_size=grid, temporal_size=x.shape[1], use_real=True
            )
        else:
            rotary = get_3d_rotary_pos_embed(
                config.attention_head_dim, None, grid_size=grid, temporal_size=x.shape[1] // config.patch_size_t,
                grid_type="slice", max_size=(config.sample_height // p, config.sample_width // p),
            )
    return reference(x, context, timesteps, ofs=ofs, image_rotary_emb=rotary, return_dict=False)[0]


class TinyEngine(torch.nn.Module):
    """Stands in for the diffusion engine's key layout: ``model.diffusion_model.*`` plus a ``conditioner``."""

    def __init__(self, dit: torch.nn.Module):
        super().__init__()
        from sgm.modules.diffusionmodules.wrappers import OpenAIWrapper

        self.model = OpenAIWrapper(dit)
        self.conditioner = torch.nn.Linear(2, 2)
