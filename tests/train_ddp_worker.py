"""torchrun worker of tests/test_train_two_ranks.py (not a test module).

    torchrun --standalone --nproc_per_node=2 tests/train_ddp_worker.py OUT_DIR <train_video.py arguments>

Trains through `train_video.main`, recording the DDPM indices this rank's loss drew and its losses, then writes
OUT_DIR/rank<r>.pt = {"trained": this rank's trained parameters, "drawn": the indices, "losses": per iteration}.
"""

import sys

import torch

import train_video
from diffusion_video import SATVideoDiffusionEngine
from sgm.modules.diffusionmodules.sigma_sampling import DiscreteSampling

DRAWN: list[int] = []
DRAW = DiscreteSampling.__call__
LOSSES: list[float] = []
FORWARD = SATVideoDiffusionEngine.forward


def recording_draw(self, n_samples: int, generator: torch.Generator | None = None):
    alpha_cumprod_sqrt, idx = DRAW(self, n_samples, generator)
    DRAWN.extend(idx.tolist())
    return alpha_cumprod_sqrt, idx


def recording_forward(engine, x, batch):
    loss, log = FORWARD(engine, x, batch)
    LOSSES.append(float(loss.detach().double()))
    return loss, log


def main(out_dir: str, argv: list[str]) -> None:
    DiscreteSampling.__call__ = recording_draw
    SATVideoDiffusionEngine.forward = recording_forward
    engine = train_video.main(argv).module
    trained = {name: param.detach().clone() for name, param in engine.named_parameters() if param.requires_grad}
    torch.save({"trained": trained, "drawn": DRAWN, "losses": LOSSES}, f"{out_dir}/rank{torch.distributed.get_rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
