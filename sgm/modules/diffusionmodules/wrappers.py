"""The wrapper that turns the sampler's (x, t, cond) call into the DiT's keyword call."""

from typing import Callable

import torch
from torch import nn

from image_to_video.batch_keys import CONCAT_COND_KEY, OFS_COND_KEY


class OpenAIWrapper(nn.Module):
    """Holds the network as ``diffusion_model`` (hence the ``model.diffusion_model.`` key prefix).

    ``cond["crossattn"]`` becomes the DiT's ``context``, ``cond["vector"]`` its ``y``, ``cond["concat"]`` (if any) is
    concatenated to the latents on the channel axis, and ``cond["ofs"]`` (if any, 1.5-I2V) becomes the DiT's ``ofs``.
    ``compile_model``: the network's forward is compiled at the first call, after loading and casting, so the keys
    stay ``model.diffusion_model.*`` (deliberate difference: the reference compiles at construction, and no
    checkpoint loads, docs/faithfulness.md).
    """

    def __init__(self, diffusion_model: nn.Module, compile_model: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.diffusion_model = diffusion_model
        self.compile_model = compile_model
        self.compiled_forward: Callable | None = None  # built at the first call when compile_model
        self.dtype = dtype

    def network(self) -> Callable:
        """The DiT's forward: compiled (once, at the first call) when ``compile_model``, else the module."""
        if not self.compile_model:
            return self.diffusion_model
        if self.compiled_forward is None:
            self.compiled_forward = torch.compile(self.diffusion_model.forward)
        return self.compiled_forward

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: dict, **unused_model_inputs) -> torch.Tensor:
        """x: (b, t, c, h, w) latents; t: (b,) integer step indices; returns (b, t, c_out, h, w)."""
        if CONCAT_COND_KEY in c:
            x = torch.cat((x, c[CONCAT_COND_KEY].type_as(x)), dim=2)  # (b, t, c + c_concat, h, w)
        extra = {"ofs": c[OFS_COND_KEY]} if OFS_COND_KEY in c else {}  # (b,) the DiT's ofs argument
        return self.network()(x, timesteps=t, context=c.get("crossattn"), y=c.get("vector"), **extra)
