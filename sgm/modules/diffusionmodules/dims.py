"""Broadcasting per-sample scalars against (b, ...) tensors."""

import torch


def append_dims(values: torch.Tensor, target_ndim: int) -> torch.Tensor:
    """(b,) -> (b, 1, ..., 1) with ``target_ndim`` dims in total."""
    missing = target_ndim - values.ndim
    if missing < 0:
        raise ValueError(f"cannot broadcast a {values.ndim}-d tensor to {target_ndim} dims")
    return values[(...,) + (None,) * missing]
