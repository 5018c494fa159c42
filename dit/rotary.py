"""3D rotary position embedding of the video tokens' queries and keys (CogVideoX-5B and 1.5), with the optional
learned additive table of CogVideoX-5B-I2V."""

import torch
from einops import rearrange
from sat.model.base_model import BaseMixin
from torch import nn

from dit.attention import full_attention
from dit.patching import PatchSize
from dit.rotary_table import SlicedRotaryTable, StoredRotaryTable


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs: (x0, x1) -> (-x1, x0) along the last axis."""
    pairs = rearrange(x, "... (d r) -> ... d r", r=2)
    first, second = pairs.unbind(dim=-1)
    return rearrange(torch.stack((-second, first), dim=-1), "... d r -> ... (d r)")


class Rotary3DPositionEmbeddingMixin(BaseMixin):
    """SAT ``attention_fn`` hook rotating the video part of q and k, then full attention (SDPA).

    Each head's channels are split ``[t (head/4) | h (3 head/8) | w (3 head/8)]``; text tokens are not rotated. The
    angles come from ``self.table``, chosen by the patch size's form: ``patch_size: 2`` (1.0; matches the reference
    v1.0) stored buffers (:class:`dit.rotary_table.StoredRotaryTable`), ``[2, 2, 2]`` (1.5; matches the reference
    e519ece) computed per input grid (:class:`dit.rotary_table.SlicedRotaryTable`). SAT's own learned
    ``transformer.position_embeddings`` (in the released state dicts) is left in place and never used.

    ``learnable_pos_embed`` (5B-I2V): a trainable ``pos_embedding`` (1, text_length + T*H*W, hidden), zeros at
    construction, added to the ``[text | video]`` sequence (sliced to its length) before the first layer.
    ``*_interpolation``: matches the reference, which accepts and ignores them (integer positions always).
    """

    def __init__(
        self,
        height: int,
        width: int,
        compressed_num_frames: int,
        hidden_size: int,
        hidden_size_head: int,
        text_length: int,
        patch_size: PatchSize,
        theta: float = 10000.0,
        learnable_pos_embed: bool = False,
        height_interpolation: float = 1.0,  # accepted and ignored, as the reference
        width_interpolation: float = 1.0,  # accepted and ignored, as the reference
        time_interpolation: float = 1.0,  # accepted and ignored, as the reference
    ):
        super().__init__()
        if hidden_size % hidden_size_head:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of hidden_size_head {hidden_size_head}")
        self.text_length = text_length
        if patch_size.temporal and learnable_pos_embed:
            raise ValueError("learnable_pos_embed: true is a CogVideoX-5B-I2V (patch_size: 2) feature; no "
                             "CogVideoX1.5 model (patch_size [t, h, w]) has a learned position table")
        table = SlicedRotaryTable if patch_size.temporal else StoredRotaryTable
        self.table = table(self, compressed_num_frames, height, width, hidden_size_head, theta)
        if learnable_pos_embed:
            num_tokens = text_length + compressed_num_frames * height * width
            self.pos_embedding = nn.Parameter(torch.zeros(1, num_tokens, hidden_size))
        else:
            self.pos_embedding = None

    @property
    def fixed_text_length(self) -> int | None:
        """The text length the input must have (1.0: the configured one, the learned table's text rows); None for
        1.5, where the length comes from the context."""
        return None if self.table.text_from_context else self.text_length

    def check_grid(self, grid: tuple[int, int, int], patch: PatchSize) -> None:
        """ValueError, in latent units, unless the (T', H', W') token grid has positions in the table."""
        self.table.check(grid, patch)

    def position_embedding_forward(self, position_ids: torch.Tensor, **kw_args) -> torch.Tensor | None:
        """The learned table's first ``text_length + seq_length`` rows (1, n_text + n_video, d); without it, nothing
        (positions then enter only through the rotation)."""
        if self.pos_embedding is None:
            return None
        return self.pos_embedding[:, : self.text_length + kw_args["seq_length"]]

    def attention_fn(
        self,
        query_layer: torch.Tensor,
        key_layer: torch.Tensor,
        value_layer: torch.Tensor,
        attention_mask: torch.Tensor,
        attention_dropout: torch.nn.Dropout | None = None,
        **kw_args,
    ) -> torch.Tensor:
        """q, k, v: (b, heads, n_text + n_video, head) -> (b, heads, n, head); full attention."""
        text_length = kw_args["text_length"]
        cos, sin = self.table.cos_sin((kw_args["rope_T"], kw_args["rope_H"], kw_args["rope_W"]), query_layer.device)
        cos, sin = cos.to(query_layer.dtype), sin.to(query_layer.dtype)  # (n_video, head), the activations' dtype

        def rotate(x: torch.Tensor) -> torch.Tensor:  # (b, heads, n, head), video tokens rotated
            video = x[:, :, text_length:]
            return torch.cat((x[:, :, :text_length], video * cos + rotate_half(video) * sin), dim=2)

        return full_attention(rotate(query_layer), rotate(key_layer), value_layer, attention_dropout)

