"""3D rotary position embedding of the video tokens' queries and keys (CogVideoX-5B)."""

import torch
from einops import rearrange, repeat
from sat.model.base_model import BaseMixin

from dit.attention import full_attention


def axis_angles(dim: int, length: int, theta: float) -> torch.Tensor:
    """Rotation angles of one axis, each frequency repeated for its (even, odd) pair: (length, dim)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))  # (dim/2,)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freqs[None]  # (length, dim/2)
    return repeat(angles, "n f -> n (f r)", r=2)  # (length, dim)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs: (x0, x1) -> (-x1, x0) along the last axis."""
    pairs = rearrange(x, "... (d r) -> ... d r", r=2)
    first, second = pairs.unbind(dim=-1)
    return rearrange(torch.stack((-second, first), dim=-1), "... d r -> ... (d r)")


class Rotary3DPositionEmbeddingMixin(BaseMixin):
    """SAT ``attention_fn`` hook rotating the video part of q and k, then full attention (SDPA).

    Each head's channels are split ``[t (head/4) | h (3 head/8) | w (3 head/8)]``; text tokens are
    not rotated. The cos/sin tables are non-persistent buffers (not in the state dict).
    Matches the reference: SAT's own learned ``transformer.position_embeddings`` is left in place
    (it is in the released state dict) and never used.
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
    ):
        super().__init__()
        if hidden_size % hidden_size_head:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of hidden_size_head {hidden_size_head}")
        dim_t, dim_hw = hidden_size_head // 4, hidden_size_head // 8 * 3
        if dim_t + 2 * dim_hw != hidden_size_head or dim_t % 2 or dim_hw % 2:
            raise ValueError(f"hidden_size_head must be a multiple of 16 for 3D rotary, got {hidden_size_head}")
        self.text_length = text_length
        angles_t = axis_angles(dim_t, compressed_num_frames, theta)  # (T, dim_t)
        angles_h = axis_angles(dim_hw, height, theta)  # (H, dim_hw)
        angles_w = axis_angles(dim_hw, width, theta)  # (W, dim_hw)
        shape = (compressed_num_frames, height, width)
        angles = torch.cat(
            (
                angles_t[:, None, None].expand(*shape, dim_t),
                angles_h[None, :, None].expand(*shape, dim_hw),
                angles_w[None, None, :].expand(*shape, dim_hw),
            ),
            dim=-1,
        )  # (T, H, W, head)
        self.register_buffer("freqs_cos", angles.cos(), persistent=False)
        self.register_buffer("freqs_sin", angles.sin(), persistent=False)

    def rotary(self, x: torch.Tensor, rope_T: int, rope_H: int, rope_W: int) -> torch.Tensor:
        """x: (b, heads, t*h*w, head) video queries or keys -> same shape, rotated."""
        cos = rearrange(self.freqs_cos[:rope_T, :rope_H, :rope_W], "t h w d -> (t h w) d").to(x.dtype)
        sin = rearrange(self.freqs_sin[:rope_T, :rope_H, :rope_W], "t h w d -> (t h w) d").to(x.dtype)
        return x * cos + rotate_half(x) * sin

    def position_embedding_forward(self, position_ids: torch.Tensor, **kw_args) -> None:
        """No additive position embedding: positions enter through the rotation."""
        return None

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
        grid = {"rope_T": kw_args["rope_T"], "rope_H": kw_args["rope_H"], "rope_W": kw_args["rope_W"]}
        query = torch.cat((query_layer[:, :, :text_length], self.rotary(query_layer[:, :, text_length:], **grid)), dim=2)
        key = torch.cat((key_layer[:, :, :text_length], self.rotary(key_layer[:, :, text_length:], **grid)), dim=2)
        return full_attention(query, key, value_layer, attention_dropout)
