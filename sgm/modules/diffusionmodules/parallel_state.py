"""Where this process sits in the data- and model-parallel layout (sat.mpu), with a 1-process fallback."""

import torch
import torch.distributed
from sat import mpu


def mpu_is_active() -> bool:
    """True when torch.distributed is initialised and sat.mpu has built its groups."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return distributed and mpu.model_parallel_is_initialized()


def data_parallel_rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) among data-parallel replicas.

    sat.mpu's groups when set up; torch.distributed's world when it is initialised without sat.mpu
    (then there is no model parallelism); (0, 1) in a plain single process.
    """
    if mpu_is_active():
        return mpu.get_data_parallel_rank(), mpu.get_data_parallel_world_size()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def broadcast_in_model_parallel_group(*tensors: torch.Tensor) -> None:
    """In place: give every model-parallel rank the first rank's copy; a no-op without model parallelism."""
    if not mpu_is_active() or mpu.get_model_parallel_world_size() == 1:
        return
    for tensor in tensors:
        torch.distributed.broadcast(tensor, src=mpu.get_model_parallel_src_rank(), group=mpu.get_model_parallel_group())
