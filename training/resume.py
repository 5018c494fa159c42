"""The state beyond the weights that makes a resumed run continue the interrupted one: RNG, optimizer, LR schedule.

Per rank (`<iteration>/training_state_dp<r>_mp<m>.pt`): the Python, numpy, torch (and CUDA) RNG states and the
optimizer's state dict (this rank's ZeRO partition, or a plain torch optimizer's). These files pickle numpy arrays
and DeepSpeed objects, so they are read with `weights_only=False`: only ever files that `train_video.py` wrote.

Restored when SAT's loop starts: the LR scheduler continues at the saved step (SAT would restart its warm-up), the
optimizer gets its moments back (SAT saves none), and the RNGs continue from the first step's forward on (after
SAT's re-seed and its data iterators' seed draws).
"""

import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from deepspeed.runtime.base_optimizer import DeepSpeedOptimizer
from deepspeed.runtime.zero.stage3 import DeepSpeedZeroOptimizer_Stage3
from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer
from sat.training.learning_rates import AnnealingLR

from input_errors import InputError


def capture_rng() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def scheduler_state(lr_scheduler: AnnealingLR) -> dict:
    """What SAT's AnnealingLR needs to continue (its own `state_dict` lacks the warm-up window)."""
    return {
        "init_step": lr_scheduler.init_step,
        "num_iters": lr_scheduler.num_iters,
        "auto_warmup_steps": lr_scheduler.auto_warmup_steps,
    }


def restore_scheduler(lr_scheduler: AnnealingLR, state: dict) -> None:
    lr_scheduler.init_step = state["init_step"]
    lr_scheduler.auto_warmup_steps = state["auto_warmup_steps"]
    lr_scheduler.step(state["num_iters"])  # sets the param groups' lr as at the saved step


ZERO_OPTIMIZERS = (DeepSpeedZeroOptimizer, DeepSpeedZeroOptimizer_Stage3)  # stages 1/2 and 3


def optimizer_state(optimizer) -> dict:
    """This rank's optimizer state: ZeRO's partition (DeepSpeed optimizers) or the torch optimizer's dict."""
    if isinstance(optimizer, DeepSpeedOptimizer) and not isinstance(optimizer, ZERO_OPTIMIZERS):
        raise ValueError(f"saving {type(optimizer).__name__} states is not supported (ZeRO stage 1, 2, 3 or a plain "
                         "torch optimizer are); pass --no-save-optim")
    return optimizer.state_dict()


def load_optimizer_state(optimizer, rank_states: list[dict], rank: int) -> None:
    """ZeRO optimizers take every rank's partition (they pick theirs; stage 3 also restores the partitioned
    weights from its fp32 copy); torch optimizers take their own dict."""
    if isinstance(optimizer, ZERO_OPTIMIZERS):
        optimizer.load_state_dict(rank_states, load_optimizer_states=True, load_from_fp32_weights=True)
    else:
        optimizer.load_state_dict(rank_states[rank])


@dataclass(frozen=True)
class ResumeState:
    """Read from a checkpoint at load time; applied by `apply` when SAT's loop starts."""

    iteration: int
    trained_parameters: tuple[str, ...]  # what the saved run trained; this run must train the same
    scheduler: dict
    rank_state_paths: tuple[Path, ...]  # one per data-parallel rank of the saved run (this model-parallel rank)
    rank: int  # this process's data-parallel rank
    restore_optimizer: bool
    restore_rng: bool
    validation_batches: int  # the validation loader continues after these (data_position)

    def check_trained(self, trained: list[str]) -> None:
        """The optimizer states and LR schedule belong to the saved parameter set; refuse any other."""
        if tuple(trained) != self.trained_parameters:
            changed = sorted(set(trained) ^ set(self.trained_parameters))
            raise InputError(f"cannot resume: this run trains a different parameter set than the checkpoint "
                             f"({len(trained)} vs {len(self.trained_parameters)} tensors, e.g. {changed[:3]}); "
                             "keep not_trainable_prefixes and lora_config as in the interrupted run")

    def apply(self, optimizer, lr_scheduler: AnnealingLR) -> None:
        """LR schedule and optimizer moments; call once SAT has built them, before its loop starts."""
        restore_scheduler(lr_scheduler, self.scheduler)
        if self.restore_optimizer:
            states = [torch.load(path, map_location="cpu", weights_only=False) for path in self.rank_state_paths]
            load_optimizer_state(optimizer, [state["optimizer"] for state in states], self.rank)
        else:
            warnings.warn(f"resuming at iteration {self.iteration} without optimizer states: Adam's moments restart")

    def apply_rng(self) -> None:
        """This rank's RNG states; call right before the first step's forward (after SAT has re-seeded and built
        its data iterators, whose creation draws from torch's RNG)."""
        if self.restore_rng:
            restore_rng(torch.load(self.rank_state_paths[self.rank], map_location="cpu", weights_only=False)["rng"])
