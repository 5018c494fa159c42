"""The CogVideoX diffusion transformer: a SAT ``BaseModel`` whose behaviour comes from mixins.

The YAML ``network_config`` names ``dit_video_concat.DiffusionTransformer`` and, under ``modules``,
the mixins below (re-exported here so those import paths resolve). The resulting state dict has
exactly the released keys: ``mixins.{pos_embed,patch_embed,adaln_layer,final_layer}.*``,
``transformer.layers.{L}.*``, ``transformer.final_layernorm.*``, ``time_embed.{0,2}.*``.
"""

import argparse
from functools import partial
from typing import Any, Mapping

import torch
from sat.model.base_model import BaseModel
from sat.ops.layernorm import LayerNorm
from sat.transformer_defaults import ARGS_DEFAULT
from torch import nn

from dit.adaln import AdaLNMixin
from dit.final_layer import FinalLayerMixin
from dit.ofs_embed import OfsEmbedding
from dit.patch_embed import ImagePatchEmbeddingMixin
from dit.patching import PatchSize
from dit.per_sample import per_sample
from dit.position import Basic3DPositionEmbeddingMixin
from dit.rotary import Rotary3DPositionEmbeddingMixin
from dit.timestep import timestep_embedding
from input_errors import suggestion
from sgm.util import ConfigError, instantiate_from_config, plain
from model_family import latent_frame_count

__all__ = [
    "AdaLNMixin",
    "Basic3DPositionEmbeddingMixin",
    "DiffusionTransformer",
    "FinalLayerMixin",
    "ImagePatchEmbeddingMixin",
    "Rotary3DPositionEmbeddingMixin",
]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# SAT BaseModel arguments the YAML's `transformer_args` may set (besides SAT's optional ARGS_DEFAULT ones).
TRANSFORMER_ARG_NAMES = frozenset(
    {"vocab_size", "max_sequence_length", "layernorm_order", "skip_init", "model_parallel_size", "is_decoder"}
)
# Of SAT's optional ARGS_DEFAULT options, the ones the DiT honours; the others (gated MLP, experts, multi-query heads,
# dropouts, ...) are accepted only at SAT's default, which means "off".
USED_OPTIONAL_ARGS = frozenset({"checkpoint_activations"})
# SAT arguments the DiT sets itself. Matches the reference: its DiffusionTransformer writes
# `transformer_args.parallel_output = parallel_output` (True) over whatever the YAML gave.
DIT_SET_ARGS = {"parallel_output": True}
MODULE_CONFIG_NAMES = ("pos_embed_config", "lora_config", "patch_embed_config", "adaln_layer_config", "final_layer_config")


def sat_transformer_args(transformer_args: Mapping[str, Any], num_layers: int, hidden_size: int, num_attention_heads: int) -> argparse.Namespace:
    """The YAML ``transformer_args`` as the Namespace SAT's BaseModel reads; unknown keys are an error."""
    given = dict(plain(transformer_args))
    for name in sorted(set(given) & set(DIT_SET_ARGS)):
        raise ConfigError(f"transformer_args.{name}: set by the DiT itself ({DIT_SET_ARGS[name]!r}, as the reference's "
                          f"DiffusionTransformer overwrites it); remove it from transformer_args")
    optional = {name: default for name, default in ARGS_DEFAULT.values()}
    allowed = TRANSFORMER_ARG_NAMES | set(optional)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"transformer_args: unknown key(s) {unknown}; {suggestion(unknown[0], allowed)}")
    for name in sorted(set(given) & set(optional) - USED_OPTIONAL_ARGS):
        if given[name] != optional[name]:
            raise ConfigError(
                f"transformer_args.{name}={given[name]!r}: the DiT's layers do not implement SAT's {name}; only its "
                f"default {optional[name]!r} is accepted (settable: {sorted(USED_OPTIONAL_ARGS)})"
            )
    for name in TRANSFORMER_ARG_NAMES:
        if name not in given:
            raise ConfigError(f"transformer_args: missing key {name!r} (the released configs set it)")
    if given["layernorm_order"] != "pre":
        raise ConfigError(f"transformer_args.layernorm_order: only 'pre' is implemented, got {given['layernorm_order']!r}")
    if given["is_decoder"]:
        raise ConfigError("transformer_args.is_decoder: the DiT has no cross-attention; expected false")
    if given["model_parallel_size"] != 1:
        raise ConfigError(f"transformer_args.model_parallel_size: only 1 is supported, got {given['model_parallel_size']}")
    return argparse.Namespace(
        **given, num_layers=num_layers, hidden_size=hidden_size, num_attention_heads=num_attention_heads, **DIT_SET_ARGS
    )


class DiffusionTransformer(BaseModel):
    """CogVideoX DiT: ``[text | video patches]`` tokens through adaLN transformer layers.

    Layers use SAT's ``BaseTransformer`` (fused ``query_key_value`` rows [q; k; v], GELU-tanh MLP of 4x hidden,
    LayerNorm eps 1e-5); the mixins named in ``modules`` supply the patch embedding, position embedding, adaLN
    layer, final layer and (optionally) LoRA. One class builds every released family: ``patch_size`` 2 or
    ``[2, 2, 2]`` (1.5) chooses the parts (``dit/patching.py``), ``ofs_embed_dim`` (1.5-I2V) adds the ``ofs``
    embedding (``forward`` then needs ``ofs``).

    ``dtype`` ("fp32" | "fp16" | "bf16") is the inputs' compute dtype; the parameters are cast by whoever builds the
    engine, as in the reference. ``adm_in_channels``: accepted so the released YAMLs load, and unused (the
    reference reads it only with ``num_classes``, which no released config sets).
    """

    def __init__(
        self,
        transformer_args: Mapping[str, Any],
        num_frames: int,
        time_compressed_rate: int,
        latent_width: int,
        latent_height: int,
        patch_size: int | list[int],
        in_channels: int,
        out_channels: int,
        hidden_size: int,
        num_layers: int,
        num_attention_heads: int,
        elementwise_affine: bool,
        time_embed_dim: int,
        modules: Mapping[str, Any],
        adm_in_channels: int | None = None,  # accepted and ignored, as the reference (see the class docstring)
        ofs_embed_dim: int | None = None,
        dtype: str = "fp32",
    ):
        if dtype not in DTYPES:
            raise ConfigError(f"DiffusionTransformer: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        patch = PatchSize.from_config(plain(patch_size))
        if latent_width % patch.w or latent_height % patch.h:
            raise ConfigError(f"latent size {latent_height}x{latent_width} is not divisible by patch_size {plain(patch_size)}")
        if ofs_embed_dim is not None and (not isinstance(ofs_embed_dim, int) or ofs_embed_dim <= 0 or ofs_embed_dim % 2):
            raise ConfigError(f"ofs_embed_dim must be a positive even int (the released 1.5-I2V sets 512), got {ofs_embed_dim!r}")
        if ofs_embed_dim is not None and ofs_embed_dim != time_embed_dim:
            raise ConfigError(f"ofs_embed_dim {ofs_embed_dim} must equal time_embed_dim {time_embed_dim} (the ofs "
                              "embedding is added to the time embedding)")
        modules = dict(plain(modules))
        unknown = sorted(set(modules) - set(MODULE_CONFIG_NAMES))
        if unknown:
            raise ConfigError(f"modules: unknown entr(y/ies) {unknown}; allowed: {list(MODULE_CONFIG_NAMES)}")
        args = sat_transformer_args(transformer_args, num_layers, hidden_size, num_attention_heads)
        super().__init__(
            args,
            layernorm=partial(LayerNorm, elementwise_affine=elementwise_affine),
            activation_func=nn.GELU(approximate="tanh"),
        )
        self.compute_dtype = DTYPES[dtype]
        self.in_channels = in_channels
        self.hidden_size = hidden_size
        self.patch_size = patch
        self.latent_height = latent_height
        self.latent_width = latent_width
        self.latent_frames = latent_frame_count(num_frames, time_compressed_rate)
        self.time_embed = nn.Sequential(nn.Linear(hidden_size, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim))
        self.ofs_embed = OfsEmbedding(ofs_embed_dim) if ofs_embed_dim is not None else None
        self._build_mixins(modules, num_layers, num_attention_heads, out_channels, time_embed_dim, elementwise_affine)

    def _build_mixins(
        self, modules: dict, num_layers: int, num_attention_heads: int, out_channels: int, time_embed_dim: int, elementwise_affine: bool
    ) -> None:
        """Add the mixins in the reference's order (it fixes the state-dict key order)."""
        for name in ("pos_embed_config", "patch_embed_config", "adaln_layer_config", "final_layer_config"):
            if name not in modules:
                raise ConfigError(f"modules: missing {name!r}")
        grid = {  # the position table's size in tokens; temporally it counts latent frames (as the reference)
            "height": self.latent_height // self.patch_size.h,
            "width": self.latent_width // self.patch_size.w,
            "compressed_num_frames": self.latent_frames,
            "hidden_size": self.hidden_size,
            "patch_size": self.patch_size,
        }
        self.add_mixin("pos_embed", instantiate_from_config(modules["pos_embed_config"], **grid), reinit=True)
        self.add_mixin(
            "patch_embed",
            instantiate_from_config(
                modules["patch_embed_config"], in_channels=self.in_channels, hidden_size=self.hidden_size, patch_size=self.patch_size
            ),
            reinit=True,
        )
        self.add_mixin(
            "adaln_layer",
            instantiate_from_config(
                modules["adaln_layer_config"],
                hidden_size=self.hidden_size,
                num_layers=num_layers,
                time_embed_dim=time_embed_dim,
                hidden_size_head=self.hidden_size // num_attention_heads,
                elementwise_affine=elementwise_affine,
            ),
        )
        self.add_mixin(
            "final_layer",
            instantiate_from_config(
                modules["final_layer_config"],
                hidden_size=self.hidden_size,
                time_embed_dim=time_embed_dim,
                patch_size=self.patch_size,
                out_channels=out_channels,
                elementwise_affine=elementwise_affine,
            ),
            reinit=True,
        )
        if "lora_config" in modules:
            self.add_mixin("lora", instantiate_from_config(modules["lora_config"], layer_num=num_layers), reinit=True)

    def _check_inputs(
        self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None, ofs: torch.Tensor | None
    ) -> tuple[int, int, int]:
        """ValueError naming the first bad input; returns the (T', H', W') token grid of ``x``."""
        if y is not None:
            raise ValueError("DiffusionTransformer: y (class/vector conditioning) is not used by this model; pass None")
        if x.ndim != 5:
            raise ValueError(f"DiffusionTransformer: x must be (b, t, c, h, w), got shape {tuple(x.shape)}")
        b, t, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"DiffusionTransformer: expected {self.in_channels} latent channels, got {c}")
        pos_embed = self.get_mixin("pos_embed")
        grid = self.patch_size.grid(t, h, w)
        pos_embed.check_grid(grid, self.patch_size)
        if timesteps.shape != (b,):
            raise ValueError(f"DiffusionTransformer: timesteps must have shape ({b},), got {tuple(timesteps.shape)}")
        text_length = pos_embed.fixed_text_length
        text_hidden = self.get_mixin("patch_embed").text_hidden_size
        if context is None or context.ndim != 3 or context.shape[0] != b or context.shape[2] != text_hidden or (
            text_length is not None and context.shape[1] != text_length
        ):
            got = None if context is None else tuple(context.shape)
            expected = f"({b}, {'n_text' if text_length is None else text_length}, {text_hidden})"
            raise ValueError(f"DiffusionTransformer: context must have shape {expected}, got {got}")
        if self.ofs_embed is None and ofs is not None:
            raise ValueError("DiffusionTransformer: ofs was given, but this model has no ofs embedding (ofs_embed_dim unset)")
        if self.ofs_embed is not None and (ofs is None or ofs.ndim != 1 or ofs.shape[0] not in (1, b)):
            got = None if ofs is None else tuple(ofs.shape)
            raise ValueError(
                f"DiffusionTransformer: this model (ofs_embed_dim {self.ofs_embed.dim}, CogVideoX1.5-I2V) needs ofs of "
                f"shape (1,) or ({b},) (sampling passes 2.0), got {got}"
            )
        return grid

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor | None = None,
        ofs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the model output for noisy latents.

        x: (b, t, c, h, w) latents; timesteps: (b,) DDPM indices 0..999 (long or float);
        context: (b, n_text, text_hidden) T5 embedding; ofs: (1,) or (b,), required by (only by) a model with
        ``ofs_embed_dim``. Returns (b, t, out_channels, h, w).
        """
        rope_t, rope_h, rope_w = self._check_inputs(x, timesteps, context, y, ofs)
        x = x.to(self.compute_dtype)
        context = context.to(self.compute_dtype)

        # 1. time embedding (plus the ofs embedding of 1.5-I2V)
        emb = per_sample(self.time_embed, timestep_embedding(timesteps, self.hidden_size).to(self.compute_dtype))  # (b, time_embed_dim)
        if self.ofs_embed is not None:
            emb = emb + self.ofs_embed.embed(ofs, self.compute_dtype)  # (b, time_embed_dim)

        # 2. SAT transformer; the mixins' hooks read these keyword arguments
        ones = torch.ones((1, 1), dtype=x.dtype, device=x.device)  # SAT's placeholders; mask of ones = full attention
        return super().forward(
            input_ids=ones,
            position_ids=ones,
            attention_mask=ones,
            images=x,
            encoder_outputs=context,
            emb=emb,
            text_length=context.shape[1],
            seq_length=rope_t * rope_h * rope_w,
            rope_T=rope_t,
            rope_H=rope_h,
            rope_W=rope_w,
        )[0]  # (b, t, out_channels, h, w)
