"""Per-sample embeddings computed one sample at a time when sampling, so a sample's numbers do not depend on its batch.

The time embedding, the ofs embedding and the adaLN modulations map one row per sample, ``(b, d_in) -> (b, d_out)``.
A CPU fp32 matmul of one row (a matrix-vector kernel) rounds differently from the same row inside a matmul of two
(about 1e-7 relative), while the token matmuls ``(b, n, d)`` give each sample the same numbers at any ``b`` (measured
on the CPU at 1 and 2 threads, ``tests/test_dit_batch_invariance.py``; a GPU's kernels make no such promise). Running
these small maps row by row makes the DiT batch-invariant there: a guidance-parallel rank, which runs one branch
(batch b), computes bit for bit what one process computes for that branch inside its guided batch of 2b
(``tests/test_parallel_sampling.py``). With gradients enabled (training) the maps run batched as before: under
ZeRO-3 every call of a module gathers its parameters (the adaLN modulations are about 0.8 B of the 5B model's
weights), and training needs no batch invariance.
"""

import torch
from torch import nn


def per_sample(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """rows: (b, d_in) -> module(rows): (b, d_out), each row through ``module`` alone unless gradients are enabled."""
    if torch.is_grad_enabled():
        return module(rows)
    return torch.cat([module(row) for row in rows.split(1)], dim=0)
