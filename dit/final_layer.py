"""Final adaLN-modulated projection of the video tokens back to latent patches."""

import torch
from einops import rearrange
from sat.model.base_model import BaseMixin
from torch import nn

from dit.adaln import modulate


def unpatchify(x: torch.Tensor, channels: int, patch_size: int, frames: int, height: int, width: int) -> torch.Tensor:
    """x: (b, t*h*w, c*p*p) patch tokens -> (b, t, c, h*p, w*p) latents."""
    return rearrange(
        x, "b (t h w) (c p q) -> b t c (h p) (w q)", t=frames, h=height, w=width, c=channels, p=patch_size, q=patch_size
    )


class FinalLayerMixin(BaseMixin):
    """SAT ``final_forward`` hook: drop the text tokens, modulated LayerNorm (eps 1e-6), Linear, unpatchify.

    The modulation is ``SiLU -> Linear(time_embed_dim, 2 * hidden)`` chunked as shift, scale.
    """

    def __init__(self, hidden_size: int, time_embed_dim: int, patch_size: int, out_channels: int, elementwise_affine: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=elementwise_affine, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, 2 * hidden_size))

    def final_forward(self, logits: torch.Tensor, **kw_args) -> torch.Tensor:
        """logits: (b, n_text + t*h*w, d) after the final LayerNorm -> (b, t, c_out, h*p, w*p)."""
        text_length = kw_args["text_length"]
        _, video = logits.split([text_length, logits.shape[1] - text_length], dim=1)  # (b, t*h*w, d)
        shift, scale = self.adaLN_modulation(kw_args["emb"]).chunk(2, dim=1)  # 2 x (b, d)
        video = self.linear(modulate(self.norm_final(video), shift, scale))  # (b, t*h*w, c*p*p)
        return unpatchify(video, self.out_channels, self.patch_size, kw_args["rope_T"], kw_args["rope_H"], kw_args["rope_W"])

    def reinit(self, parent_model=None) -> None:
        """Matches the reference: xavier-uniform output projection with zero bias."""
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
