"""3D rotary position embedding of the video tokens' queries and keys (CogVideoX-5B), with the optional learned
additive table of CogVideoX-5B-I2V."""

import torch
from einops import rearrange, repeat
from sat.model.base_model import BaseMixin
from torch import nn

from dit.attention import full_attention


def axis_angles(dim: int, length: int, theta: float) -> torch.Tensor:
    """Rotation angles of one axis, each frequency repeated for its (even, odd) pair: (length, dim)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))  # (dim/2,)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freqs[None]  # (length, dim/2)
    return repeat(angles, "n f -> n (f r)", r=2)  # (length, dim)


def rotary_angles(frames: int, height: int, width: int, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Angles of every video token (t, h, w order), channels ``[t (head/4) | h (3 head/8) | w (3 head/8)]``:
    (frames * height * width, head_dim) fp32. Integer positions, no interpolation (as the reference)."""
    dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3
    if dim_t + 2 * dim_hw != head_dim or dim_t % 2 or dim_hw % 2:
        raise ValueError(f"hidden_size_head must be a multiple of 16 for 3D rotary, got {head_dim}")
    angles_t = axis_angles(dim_t, frames, theta)  # (T, dim_t)
    angles_h = axis_angles(dim_hw, height, theta)  # (H, dim_hw)
    angles_w = axis_angles(dim_hw, width, theta)  # (W, dim_hw)
    shape = (frames, height, width)
    angles = torch.cat(
        (
            angles_t[:, None, None].expand(*shape, dim_t),
            angles_h[None, :, None].expand(*shape, dim_hw),
            angles_w[None, None, :].expand(*shape, dim_hw),
        ),
        dim=-1,
    )  # (T, H, W, head)
    return rearrange(angles, "t h w d -> (t h w) d").contiguous()  # (T*H*W, head)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs: (x0, x1) -> (-x1, x0) along the last axis."""
    pairs = rearrange(x, "... (d r) -> ... d r", r=2)
    first, second = pairs.unbind(dim=-1)
    return rearrange(torch.stack((-second, first), dim=-1), "... d r -> ... (d r)")


class Rotary3DPositionEmbeddingMixin(BaseMixin):
    """SAT ``attention_fn`` hook rotating the video part of q and k, then full attention (SDPA).

    Each head's channels are split ``[t (head/4) | h (3 head/8) | w (3 head/8)]``; text tokens are
    not rotated. Matches the reference: the sin/cos tables are persistent buffers ``freqs_sin`` /
    ``freqs_cos`` (T*H*W, head) in (t, h, w) token order, so a released checkpoint carries them and a
    loaded model rotates with the file's values (bf16 values when the file is bf16). SAT's own learned
    ``transformer.position_embeddings`` is left in place (it is in the released state dict) and never used.

    ``learnable_pos_embed`` (5B-I2V): a trainable parameter ``pos_embedding`` (1, text_length + T*H*W,
    hidden), zeros at construction, added to the whole ``[text | video]`` token sequence (sliced to its
    length) before the first layer, on top of the rotation.
    """

    def __init__(
        self,
        height: int,
        width: int,
        compressed_num_frames: int,
        hidden_size: int,
        hidden_size_head: int,
        text_length: int,
        theta: float = 10000.0,
        learnable_pos_embed: bool = False,
    ):
        super().__init__()
        if hidden_size % hidden_size_head:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of hidden_size_head {hidden_size_head}")
        self.text_length = text_length
        angles = rotary_angles(compressed_num_frames, height, width, hidden_size_head, theta)  # (T*H*W, head)
        self.register_buffer("freqs_sin", angles.sin())
        self.register_buffer("freqs_cos", angles.cos())
        if learnable_pos_embed:
            num_tokens = text_length + compressed_num_frames * height * width
            self.pos_embedding = nn.Parameter(torch.zeros(1, num_tokens, hidden_size))
        else:
            self.pos_embedding = None

    def rotary(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, heads, n_video, head) video queries or keys -> same shape, rotated by the first n_video table rows."""
        n_video = x.shape[2]
        cos = self.freqs_cos[:n_video].to(x.dtype)  # (n_video, head)
        sin = self.freqs_sin[:n_video].to(x.dtype)
        return x * cos + rotate_half(x) * sin

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
        query = torch.cat((query_layer[:, :, :text_length], self.rotary(query_layer[:, :, text_length:])), dim=2)
        key = torch.cat((key_layer[:, :, :text_length], self.rotary(key_layer[:, :, text_length:])), dim=2)
        return full_attention(query, key, value_layer, attention_dropout)
