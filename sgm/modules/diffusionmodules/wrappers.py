"""The wrapper that turns the sampler's (x, t, cond) call into the DiT's keyword call."""

import torch
from torch import nn


class OpenAIWrapper(nn.Module):
    """Holds the network as ``diffusion_model`` (hence the ``model.diffusion_model.`` key prefix).

    ``cond["crossattn"]`` becomes the DiT's ``context``, ``cond["vector"]`` its ``y``, and
    ``cond["concat"]`` (if any) is concatenated to the latents on the channel axis.
    """

    def __init__(self, diffusion_model: nn.Module, compile_model: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.diffusion_model = torch.compile(diffusion_model) if compile_model else diffusion_model
        self.dtype = dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: dict, **unused_model_inputs) -> torch.Tensor:
        """x: (b, t, c, h, w) latents; t: (b,) integer step indices; returns (b, t, c_out, h, w)."""
        if "concat" in c:
            x = torch.cat((x, c["concat"].type_as(x)), dim=2)  # (b, t, c + c_concat, h, w)
        return self.diffusion_model(x, timesteps=t, context=c.get("crossattn"), y=c.get("vector"))
