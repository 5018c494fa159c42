"""Fine-tune CogVideoX: `python train_video.py --base configs/cogvideox_2b_lora.yaml configs/sft.yaml --seed N`.

Parse, build, run: SAT's `training_main` with our forward steps (`training.forward_step`), the dataset of the
`data:` section (`data_video.SFTDataset`, or latent caches made by `tools/precompute.py`), and our checkpoint IO
(`training.sat_loop`). Without CUDA, SAT's timers are shimmed (`training.cpu_compat`) and sat.ops.FusedEmaAdam
becomes torch AdamW (`training.optimizer_config`). With `zero_optimization.stage: 3` the engine is built by
`training.zero3`. Launch several processes with torchrun (see finetune_multi_gpus.sh).
"""

import os
import sys
from functools import partial

import deepspeed
from omegaconf import OmegaConf
import torch
from sat.helpers import print_rank0
from sat.training.deepspeed_training import training_main

from arguments import get_args
from diffusion_video import SATVideoDiffusionEngine, check_training_frames, engine_dtype
from dit.first_block_cache import first_block_cache_threshold
from engine_config import check_sigma_sampler_groups, read_engine_config
from input_errors import InputError, input_errors_as_messages
from latent_cache.run_inputs import check_run_inputs
from sgm.util import get_obj_from_str
from training.cpu_compat import cpu_compat
from training.deepspeed_keys import check_deepspeed_config
from training.forward_step import forward_step, forward_step_eval
from training.interrupt import interruption_as_message, stop_line
from training.optimizer_config import resolve_optimizer_config
from training.run_folder import claim_save_folder
from training.sat_loop import RoutedSatLoop
from training.zero3 import build_engine, check_zero3_optimizer, is_zero3
from vae_modules.context_parallel import check_encode_split
from writable_folder import check_writable_folder


def set_rank_environment() -> None:
    """As the reference: under mpirun, take LOCAL_RANK / WORLD_SIZE / RANK from Open MPI's variables. A plain
    `python train_video.py` is one process (what finetune_single_gpu.sh exports; DeepSpeed requires LOCAL_RANK)."""
    if "OMPI_COMM_WORLD_LOCAL_RANK" in os.environ:
        os.environ["LOCAL_RANK"] = os.environ["OMPI_COMM_WORLD_LOCAL_RANK"]
        os.environ["WORLD_SIZE"] = os.environ["OMPI_COMM_WORLD_SIZE"]
        os.environ["RANK"] = os.environ["OMPI_COMM_WORLD_RANK"]
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)


class RunDatasets:
    """`data.target`'s `create_dataset_function` with `data.params` bound, as SAT calls it, with (path, args).

    A folder named more than once (`train_data` and `valid_data` alike, the tiny configs' layout) is listed once, so
    its listing warnings appear once, and its dataset is shared (items are read-only, decoded on demand).
    """

    def __init__(self, data_config):
        data_class = get_obj_from_str(data_config["target"])
        self.create = partial(data_class.create_dataset_function, **data_config.get("params", {}))
        self.built: dict[str, object] = {}

    def __call__(self, path: str, args):
        key = os.path.realpath(path)
        if key not in self.built:
            self.built[key] = self.create(path, args)
        return self.built[key]


def check_train_iters(args) -> None:
    """`train_iters` below 1 (with `epochs` unset) leaves SAT nothing to train: it would build the model and exit."""
    if args.epochs is None and args.train_iters < 1:
        raise InputError(f"train_iters is {args.train_iters} (--train-iters or args.train_iters in {args.base}): "
                         "nothing to train; give a number of iterations >= 1")


def main(argv: list[str]) -> torch.nn.Module:
    """Bad input (configs, data folder, checkpoints) ends in one `error: ...` line and exit status 2; Ctrl-C in
    one line saying where the run stopped and what it saved, and exit status 130 (`training.interrupt`)."""
    before_training = "interrupted before training started: nothing saved"
    with input_errors_as_messages(), interruption_as_message(lambda: before_training):
        return train(argv)


def train(argv: list[str]) -> torch.nn.Module:
    set_rank_environment()
    args = get_args(argv)
    check_train_iters(args)
    for flag, value in (("--cfg-parallel", args.cfg_parallel), ("--sequence-parallel", args.sequence_parallel)):
        if value != 1:
            raise InputError(f"{flag} {value}: a sampling option (sample_video.py); training splits data only "
                             "(first_stage_config cp_size splits the VAE encode)")
    args.first_block_cache = first_block_cache_threshold(args.first_block_cache, args.base)
    if args.first_block_cache and is_zero3(args):
        raise InputError(f"--first-block-cache {args.first_block_cache} with ZeRO-3: every rank samples its own "
                         "validation batch and gathers each layer's parameters as it runs it, so ranks skipping "
                         "different layers would wait on each other; use ZeRO stage 1 or 2, or leave it at 0")
    if args.save is not None:
        check_writable_folder(args.save, "--save")
    check_deepspeed_config(args.deepspeed_config, args.base)  # before the model is built
    read_engine_config(args.model_config, args.base)  # the engine's keys (ofs, latent_input, ...), before the build
    check_sigma_sampler_groups(args.model_config, args.world_size // args.model_parallel_size, args.base)
    data_config = getattr(args, "data_config", None)
    frames = None if data_config is None else OmegaConf.select(data_config, "params.max_num_frames")
    if frames is not None:  # otherwise the dataset reports its missing parameter
        check_training_frames(args.model_config, int(frames), args.base)
        check_encode_split(args.model_config, int(frames), args.world_size, "train_video.py")
    args.deepspeed_config = resolve_optimizer_config(args.deepspeed_config, torch.cuda.is_available())
    check_zero3_optimizer(args.deepspeed_config)
    # Latent caches among the datasets are checked here, before the model is built; all caches: no T5, no VAE encoder.
    args.precomputed_inputs = check_run_inputs(args, engine_dtype(args))
    # DeepSpeed's comm layer wraps the process group even when torch.distributed was set up earlier in-process.
    deepspeed.init_distributed(dist_backend=args.distributed_backend)
    # ZeRO-3: the engine is built here, whole, and partitioned by deepspeed.initialize (see training.zero3).
    model = build_engine(args, SATVideoDiffusionEngine) if is_zero3(args) else SATVideoDiffusionEngine
    with cpu_compat() as shimmed, RoutedSatLoop(args) as routed, interruption_as_message(lambda: stop_line(args)):
        if shimmed:
            print_rank0("no CUDA: SAT's timers run without torch.cuda.synchronize")
        return training_main(
            args,
            model_cls=model,
            forward_step_function=routed.wrap_forward_step(forward_step),
            forward_step_eval=partial(forward_step_eval, only_log_video_latents=args.only_log_video_latents,
                                      every_rank_samples=is_zero3(args)),
            create_dataset_function=RunDatasets(args.data_config),
            init_function=claim_save_folder,  # called once args.save names the run's folder
        )


if __name__ == "__main__":
    main(sys.argv[1:])
