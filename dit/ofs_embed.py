"""The "ofs" embedding of CogVideoX1.5-5B-I2V: a scalar condition added to the time embedding."""

import torch
from torch import nn

from dit.per_sample import per_sample
from dit.timestep import timestep_embedding


class OfsEmbedding(nn.Sequential):
    """``Linear(dim, dim) -> SiLU -> Linear(dim, dim)`` of the sinusoidal embedding of ``ofs`` (keys ``0.*``, ``2.*``).

    Matches the reference e519ece (``ofs_embed_dim: 512``): the same ``[cos | sin]`` sinusoid as the time embedding
    (:func:`dit.timestep.timestep_embedding`) at width ``dim``; the result is added to the time embedding, so it
    reaches every adaLN modulation and the final layer. Sampling passes ``ofs = 2.0``.
    """

    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.dim = dim

    def embed(self, ofs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """ofs: (1,) (broadcast over the batch, as the reference's sampling passes it) or (b,) -> (1 or b, dim)."""
        return per_sample(self, timestep_embedding(ofs, self.dim).to(dtype))
