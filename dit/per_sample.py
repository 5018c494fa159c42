"""Per-sample embeddings computed one sample at a time when sampling, so a sample's numbers do not depend on its batch.

The time embedding, the ofs embedding and the adaLN modulations map one row per sample, ``(b, d_in) -> (b, d_out)``.
A CPU fp32 matmul of one row (a matrix-vector kernel) rounds differently from the same row inside a matmul of two
(about 1e-7 relative), while the token matmuls give each sample the same numbers at any ``b``
(``tests/test_dit_batch_invariance.py``). Running these maps row by row makes the DiT batch-invariant, so a
guidance-parallel rank computes bit for bit what one process computes for its branch. With gradients enabled
(training) they run batched: under ZeRO-3 every call gathers the module's parameters, and training needs no batch
invariance.
"""

import torch
from torch import nn


def per_sample(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """rows: (b, d_in) -> module(rows): (b, d_out), each row through ``module`` alone unless gradients are enabled."""
    if torch.is_grad_enabled():
        return module(rows)
    return torch.cat([module(row) for row in rows.split(1)], dim=0)
