"""Fixed 3D sin-cos absolute position embedding (CogVideoX-2B)."""

import torch
from sat.model.base_model import BaseMixin
from torch import nn

from dit.attention import full_attention
from dit.patching import PatchSize, check_fixed_grid
from dit.sincos import sincos_3d_table


class Basic3DPositionEmbeddingMixin(BaseMixin):
    """SAT ``position_embedding_forward`` hook adding a fixed table to the token sequence; also the plain full-attention
    ``attention_fn`` hook (which the adaLN mixin wraps with its q/k LayerNorms), as the rotary mixin.

    The table is the parameter ``pos_embedding`` (1, text_length + T*H*W, hidden), in the state dict as in the reference
    but never trained: text rows are zero, video rows from :func:`dit.sincos.sincos_3d_table`.
    """

    def __init__(
        self,
        height: int,
        width: int,
        compressed_num_frames: int,
        hidden_size: int,
        text_length: int,
        patch_size: PatchSize,
        height_interpolation: float = 1.0,
        width_interpolation: float = 1.0,
        time_interpolation: float = 1.0,
    ):
        super().__init__()
        if patch_size.temporal:
            raise ValueError("Basic3DPositionEmbeddingMixin (the CogVideoX-2B sin-cos table) needs patch_size: <int>; "
                             "patch_size [t, h, w] (CogVideoX1.5) goes with Rotary3DPositionEmbeddingMixin")
        self.height = height
        self.width = width
        self.compressed_num_frames = compressed_num_frames
        self.text_length = text_length
        self.height_interpolation = height_interpolation
        self.width_interpolation = width_interpolation
        self.time_interpolation = time_interpolation
        num_patches = compressed_num_frames * height * width
        self.pos_embedding = nn.Parameter(torch.zeros(1, text_length + num_patches, hidden_size), requires_grad=False)

    def table(self) -> torch.Tensor:
        """The (1, text_length + T*H*W, hidden) fp32 values ``pos_embedding`` holds after ``reinit``."""
        video = sincos_3d_table(
            self.pos_embedding.shape[-1],
            self.compressed_num_frames,
            self.height,
            self.width,
            self.height_interpolation,
            self.width_interpolation,
            self.time_interpolation,
        )  # (T*H*W, d)
        text = torch.zeros(self.text_length, video.shape[1])  # (n_text, d)
        return torch.cat((text, video), dim=0)[None]  # (1, n_text + T*H*W, d)

    @property
    def fixed_text_length(self) -> int:
        """The text length the input must have: the table's text rows."""
        return self.text_length

    def check_grid(self, grid: tuple[int, int, int], patch: PatchSize) -> None:
        """ValueError, in latent units, unless the (T', H', W') token grid has rows in the table."""
        check_fixed_grid((self.compressed_num_frames, self.height, self.width), grid, patch)

    def position_embedding_forward(self, position_ids: torch.Tensor, **kw_args) -> torch.Tensor:
        """The first ``text_length + seq_length`` rows: (1, n_text + t*h*w, d)."""
        seq_length = kw_args["seq_length"]
        return self.pos_embedding[:, : self.text_length + seq_length]

    def attention_fn(
        self,
        query_layer: torch.Tensor,
        key_layer: torch.Tensor,
        value_layer: torch.Tensor,
        attention_mask: torch.Tensor,
        attention_dropout: nn.Dropout | None = None,
        **kw_args,
    ) -> torch.Tensor:
        """q, k, v: (b, heads, n, head) -> (b, heads, n, head); full attention."""
        return full_attention(query_layer, key_layer, value_layer, attention_dropout)

    def reinit(self, parent_model=None) -> None:
        """Fill the table; drops SAT's learned position embedding."""
        self.pos_embedding.data.copy_(self.table())
        if hasattr(self.transformer, "position_embeddings"):
            del self.transformer.position_embeddings
