"""torchrun worker of tests/test_train_zero3.py (not a test module).

    torchrun --standalone --nproc_per_node=2 tests/train_zero_worker.py OUT_DIR <train_video.py arguments>

Trains through `train_video.main`, recording the loss of every training step and of every validation step on this
rank, then writes OUT_DIR/rank<r>.pt = {"losses": [...], "eval_losses": [...], "shapes": each training step's video
shape (b, T, 3, H, W), "weights": the whole trained weights (gathered under ZeRO-3; on rank 0 only, None elsewhere)}.
"""

import sys

import torch

import train_video
from diffusion_video import SATVideoDiffusionEngine
from training.checkpoint_contents import trained_parameter_names
from training.zero3 import gathered_state

LOSSES: dict[str, list[float]] = {"losses": [], "eval_losses": []}
SHAPES: list[tuple[int, ...]] = []
SHARED_STEP = SATVideoDiffusionEngine.shared_step


def recording_shared_step(self, batch: dict):
    if self.training and "mp4" in batch:  # a batch of videos (not from a latent cache)
        SHAPES.append(tuple(batch["mp4"].shape))
    loss, log = SHARED_STEP(self, batch)
    LOSSES["losses" if self.training else "eval_losses"].append(float(loss.detach()))  # SAT validates in eval()
    return loss, log


def main(out_dir: str, argv: list[str]) -> None:
    SATVideoDiffusionEngine.shared_step = recording_shared_step
    engine = train_video.main(argv).module
    rank = torch.distributed.get_rank()
    weights = gathered_state(engine, tuple(trained_parameter_names(engine)), keep=rank == 0)
    torch.save({**LOSSES, "shapes": SHAPES, "weights": weights}, f"{out_dir}/rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
