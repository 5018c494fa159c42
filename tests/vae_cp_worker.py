"""Encodes and decodes on two spawned gloo processes with cp_size 2; each rank saves its results."""

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from parallel_worker import free_port
from sgm.util import instantiate_from_config


def video_and_latent() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed video (1, 3, 9, 32, 48) in [-1, 1] and latent (1, 16, 5, 4, 6): 9 frames and 5 latent frames split
    over 2 ranks as 5 + 4 and 3 + 2."""
    generator = torch.Generator().manual_seed(3)
    video = torch.rand(1, 3, 9, 32, 48, generator=generator) * 2 - 1
    return video, torch.randn(1, 16, 5, 4, 6, generator=generator)


def _worker(rank: int, port: int, config: dict, state_path: str, out: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        config = {**config, "params": {**config["params"], "cp_size": 2}}
        vae = instantiate_from_config(config)
        vae.load_state_dict(torch.load(state_path, weights_only=True))
        video, latent = video_and_latent()
        if rank == 1:  # the group's first rank's input counts (broadcast), as in the reference
            video, latent = torch.zeros_like(video), torch.zeros_like(latent)
        results = {"moments": vae.encode_moments(video), "decoded": vae.decode(latent), "chunked": vae.decode_chunked(latent)}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_cp(config: dict, vae, out: Path) -> list[dict]:
    state_path = out / "vae.pt"
    torch.save(vae.state_dict(), state_path)
    mp.start_processes(_worker, args=(free_port(), config, str(state_path), str(out)), nprocs=2, join=True, start_method="spawn")
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
