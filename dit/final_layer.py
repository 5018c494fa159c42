"""Final adaLN-modulated projection of the video tokens back to latent patches."""

import torch
from einops import rearrange
from sat.model.base_model import BaseMixin
from torch import nn

from dit.adaln import modulate
from dit.patching import PatchSize
from dit.per_sample import per_sample


def unpatchify(x: torch.Tensor, channels: int, patch: PatchSize, frames: int, height: int, width: int) -> torch.Tensor:
    """x: (b, T'*H'*W', c*o*p*q) patch tokens -> (b, T'*o, c, H'*p, W'*q) latents, (o, p, q) = (patch.t, .h, .w).

    Features are ordered (channel, frame offset, row, column), as the reference's ``b (t h w) (c o p q) ->
    b (t o) c (h p) (w q)``; with o = 1 (``patch_size: 2``) it is 1.0's ``b (t h w) (c p q) -> b t c (h p) (w q)``.
    """
    return rearrange(
        x,
        "b (t h w) (c o p q) -> b (t o) c (h p) (w q)",
        t=frames, h=height, w=width, c=channels, o=patch.t, p=patch.h, q=patch.w,
    )


class FinalLayerMixin(BaseMixin):
    """SAT ``final_forward`` hook: drop the text tokens, modulated LayerNorm (eps 1e-6), Linear, unpatchify.

    The modulation is ``SiLU -> Linear(time_embed_dim, 2 * hidden)`` chunked as shift, scale; the output Linear
    gives ``t*h*w*out_channels`` values per token (the patch volume times the latent channels).
    """

    def __init__(self, hidden_size: int, time_embed_dim: int, patch_size: PatchSize, out_channels: int, elementwise_affine: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=elementwise_affine, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size.volume * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, 2 * hidden_size))

    def final_forward(self, logits: torch.Tensor, **kw_args) -> torch.Tensor:
        """logits: (b, n_text + T'*H'*W', d) after the final LayerNorm -> (b, t, c_out, h, w) latents."""
        text_length = kw_args["text_length"]
        _, video = logits.split([text_length, logits.shape[1] - text_length], dim=1)  # (b, T'*H'*W', d)
        shift, scale = per_sample(self.adaLN_modulation, kw_args["emb"]).chunk(2, dim=1)  # 2 x (b, d)
        video = self.linear(modulate(self.norm_final(video), shift, scale))  # (b, T'*H'*W', c*o*p*q)
        return unpatchify(video, self.out_channels, self.patch_size, kw_args["rope_T"], kw_args["rope_H"], kw_args["rope_W"])

    def reinit(self, parent_model=None) -> None:
        """Matches the reference: xavier-uniform output projection with zero bias."""
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
