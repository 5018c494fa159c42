"""The stand-in for a frozen text embedder when the batch carries its output, read from a latent cache."""

import torch
from torch import nn


def embedding_key(input_key: str) -> str:
    """The batch key of a text embedder's precomputed output: 'txt' -> 'txt_embedding'."""
    return f"{input_key}_embedding"


class PrecomputedEmbedding(nn.Module):
    """Returns the embedding the batch holds under `embedding_key(input_key)`; the conditioner then applies its
    dropout and forced zeros to it exactly as to a freshly computed one. No weights."""

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return embedding  # (b, L, D)
