"""Patch embedding of the video latents and projection of the text embedding."""

import torch
from einops import rearrange
from sat.model.base_model import BaseMixin
from torch import nn

from dit.patching import PatchSize


class FramePatchProjection(nn.Conv2d):
    """CogVideoX 1.0 (``patch_size: 2``): each latent frame cut into p x p patches by a strided Conv2d, weight
    (d, c, p, p)."""

    def __init__(self, in_channels: int, hidden_size: int, patch: PatchSize, bias: bool):
        super().__init__(in_channels, hidden_size, kernel_size=(patch.h, patch.w), stride=(patch.h, patch.w), bias=bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (b, t, c, h, w) -> tokens (b, t * h/p * w/p, d) in (t, h, w) order."""
        b = images.shape[0]
        patches = super().forward(rearrange(images, "b t c h w -> (b t) c h w"))  # (b t, d, h/p, w/p)
        return rearrange(patches, "(b t) d h w -> b (t h w) d", b=b)


class VideoPatchProjection(nn.Linear):
    """CogVideoX1.5 (``patch_size: [o, p, q]``): each (o, p, q) block of latents flattened with features ordered
    (channel, frame offset, row, column), then one Linear, weight (d, c*o*p*q). Matches the reference's
    ``b t c h w -> b (t h w) c`` then ``b (t o h p w q) c -> b (t h w) (c o p q)``."""

    def __init__(self, in_channels: int, hidden_size: int, patch: PatchSize, bias: bool):
        super().__init__(in_channels * patch.volume, hidden_size, bias=bias)
        self.patch = patch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (b, t, c, h, w) -> tokens (b, t/o * h/p * w/q, d) in (t', h', w') order."""
        o, p, q = self.patch.t, self.patch.h, self.patch.w
        blocks = rearrange(images, "b (t o) c (h p) (w q) -> b (t h w) (c o p q)", o=o, p=p, q=q)  # (b, n, c*o*p*q)
        return super().forward(blocks)  # (b, n, d)


class ImagePatchEmbeddingMixin(BaseMixin):
    """SAT ``word_embedding_forward`` hook: builds the ``[text | video patches]`` token sequence.

    ``proj`` (keys ``proj.{weight,bias}``) is the projection the patch size's form selects: a per-frame Conv2d
    (``patch_size: 2``) or a Linear over (t, h, w) blocks (``patch_size: [2, 2, 2]``); tokens are ordered (t, h, w).
    The T5 embedding goes through ``text_proj``. Text tokens come first.
    """

    def __init__(self, in_channels: int, hidden_size: int, patch_size: PatchSize, text_hidden_size: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.text_hidden_size = text_hidden_size
        projection = VideoPatchProjection if patch_size.temporal else FramePatchProjection
        self.proj = projection(in_channels, hidden_size, patch_size, bias)
        self.text_proj = nn.Linear(text_hidden_size, hidden_size)

    def word_embedding_forward(self, input_ids: torch.Tensor, **kw_args) -> torch.Tensor:
        """images (b, t, c, h, w), encoder_outputs (b, n_text, text_hidden) -> (b, n_text + n_video, d)."""
        patches = self.proj(kw_args["images"])  # (b, n_video, d)
        text = self.text_proj(kw_args["encoder_outputs"])  # (b, n_text, d)
        return torch.cat((text, patches), dim=1).contiguous()  # (b, n_text + n_video, d)

    def reinit(self, parent_model=None) -> None:
        """Matches the reference: xavier-uniform patch projection, zero bias; drops SAT's word embedding."""
        weight = self.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)
        if hasattr(self.transformer, "word_embeddings"):
            del self.transformer.word_embeddings
