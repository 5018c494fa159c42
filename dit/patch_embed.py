"""Patch embedding of the video latents and projection of the text embedding."""

import torch
from einops import rearrange
from sat.model.base_model import BaseMixin
from torch import nn


class ImagePatchEmbeddingMixin(BaseMixin):
    """SAT ``word_embedding_forward`` hook: builds the ``[text | video patches]`` token sequence.

    Each latent frame is cut into ``patch_size x patch_size`` patches by a strided Conv2d
    (keys ``proj.{weight,bias}``), tokens ordered (t, h, w); the T5 embedding goes through
    ``text_proj``. Text tokens come first.
    """

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int, text_hidden_size: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.text_hidden_size = text_hidden_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.text_proj = nn.Linear(text_hidden_size, hidden_size)

    def word_embedding_forward(self, input_ids: torch.Tensor, **kw_args) -> torch.Tensor:
        """images (b, t, c, h, w), encoder_outputs (b, n_text, text_hidden) -> (b, n_text + t*h/p*w/p, d)."""
        images, context = kw_args["images"], kw_args["encoder_outputs"]
        b = images.shape[0]
        frames = rearrange(images, "b t c h w -> (b t) c h w")
        patches = self.proj(frames)  # (b t, d, h/p, w/p)
        patches = rearrange(patches, "(b t) d h w -> b (t h w) d", b=b)
        text = self.text_proj(context)  # (b, n_text, d)
        return torch.cat((text, patches), dim=1).contiguous()  # (b, n_text + n_video, d)

    def reinit(self, parent_model=None) -> None:
        """Matches the reference: xavier-uniform patch projection, zero bias; drops SAT's word embedding."""
        weight = self.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)
        if hasattr(self.transformer, "word_embeddings"):
            del self.transformer.word_embeddings
