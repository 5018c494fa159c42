"""Fine-tune CogVideoX: `python train_video.py --base configs/cogvideox_2b_lora.yaml configs/sft.yaml --seed N`.

Parse, build, run: SAT's `training_main` with our forward steps (`training.forward_step`), the dataset of the
`data:` section (`data_video.SFTDataset`, or latent caches made by `tools/precompute.py`), and our checkpoint IO
(`training.sat_loop`). Without CUDA, SAT's timers are shimmed (`training.cpu_compat`) and sat.ops.FusedEmaAdam
becomes torch AdamW (`training.optimizer_config`). With `zero_optimization.stage: 3` the engine is built by
`training.zero3`. Launch several processes with torchrun (see finetune_multi_gpus.sh).
"""

import os
import sys
import warnings
from functools import partial
from pathlib import Path

import deepspeed
import torch
from omegaconf import OmegaConf
from sat.helpers import print_rank0
from sat.training.deepspeed_training import training_main

from arguments import check_seed, choose_precision, get_args, read_args
from data_video import check_data_config
from diffusion_video import SATVideoDiffusionEngine, engine_dtype
from model_family import check_training_frames
from buckets.model_fit import check_buckets_fit
from buckets.sat_loaders import BucketedLoaders, check_bucketed_run
from buckets.spec import read_buckets
from dit.first_block_cache import first_block_cache_threshold
from engine_config import check_sigma_sampler_groups, read_engine_config
from input_errors import InputError, input_errors_as_messages
from interrupt_watch import InterruptWatch
from op_build_watch import op_build_watch
from latent_cache.dataset import LatentCacheDataset, is_cache_folder
from latent_cache.run_inputs import check_run_inputs
from checkpoints.output_folder import check_not_an_input
from parallel.threads import cpu_threads
from checkpoints.sat_checkpoint import MODEL_STATES_NAME
from sgm.util import get_obj_from_str, plain
from training.cpu_compat import cpu_compat
from training.deepspeed_keys import check_deepspeed_config
from training.forward_step import forward_step, forward_step_eval
from training.interrupt import interruption_as_message, stop_line
from training.optimizer_config import resolve_optimizer_config
from training.run_folder import claim_save_folder
from training.sat_loop import RoutedSatLoop
from training.zero3 import build_engine, check_zero3_optimizer, is_zero3
from vae_modules.context_parallel import check_encode_split
from checkpoints.writable_folder import check_writable_folder


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
    """`data.target`'s `create_dataset_function` with `data.params` bound, as SAT calls it, with (path, args); a latent
    cache folder (made by tools/precompute.py with these params, checked by `check_run_inputs`) gives its
    `LatentCacheDataset` instead. `data.params` were checked before the build (`check_inputs`: `check_data_config`).

    A folder named more than once (`train_data` and `valid_data` alike, the tiny configs' layout) is listed once, so
    its listing warnings appear once, and its dataset is shared (items are read-only, decoded on demand).
    """

    def __init__(self, data_config):
        self.data_class = get_obj_from_str(data_config["target"])
        self.params = data_config.get("params", {})
        self.create = partial(self.data_class.create_dataset_function, **self.params)
        self.built: dict[str, object] = {}

    def __call__(self, path: str, args):
        key = os.path.realpath(path)
        if key not in self.built:
            if is_cache_folder(path):
                self.built[key] = LatentCacheDataset(path)
            else:
                self.built[key] = self.create(path, args)
        return self.built[key]


def run_inputs(args) -> list[tuple[str, str]]:
    """What a run reads besides its checkpoint, as (what, path): data folders, T5 folders, VAE file. `--save` (which
    only gains new run folders) may hold them, not lie inside them (docs/output_folders.md). A checkpoint folder may
    be `--save` or hold it: a resumed run goes on in its own folder, any other gains a new run folder."""
    config = args.model_config
    inputs = [("the data folder", folder) for folder in (args.train_data or []) + (args.valid_data or [])]
    for embedder in OmegaConf.select(config, "conditioner_config.params.emb_models", default=None) or []:
        inputs.append(("the T5 folder", OmegaConf.select(embedder, "params.model_dir", default=None)))
    inputs.append(("the VAE file", OmegaConf.select(config, "first_stage_config.params.ckpt_path", default=None)))
    return inputs


def check_load_folder(args) -> None:
    """`--load` may name one iteration folder of a run (`<run>/<iteration>`: that iteration loads), but a
    `--mode pretrain` run continues in the folder it loads (SAT names it after `--load`): that must be the run."""
    folder = Path(args.load)
    if args.mode == "pretrain" and (folder / MODEL_STATES_NAME).is_file() and (folder.parent / "latest").is_file():
        raise InputError(f"--load {args.load} with --mode pretrain: the run continues in the folder it loads, so pass "
                         f"the run folder, --load {folder.parent} (it continues from the iteration its 'latest' names)")


def check_data_shape(args) -> None:
    """Before the build: the items' frame count (or every bucket, docs/buckets.md) fits the model and the VAE split."""
    data_config = getattr(args, "data_config", None)
    params = {} if data_config is None else plain(data_config.get("params", {}))
    buckets = read_buckets(params, args.base)
    if buckets is not None:
        check_buckets_fit(args.model_config, buckets, args.world_size, args.base)
        check_bucketed_run(args)
    elif params.get("max_num_frames") is not None:  # otherwise the dataset reports its missing parameter
        check_training_frames(args.model_config, int(params["max_num_frames"]), args.base)
        check_encode_split(args.model_config, int(params["max_num_frames"]), args.world_size, "train_video.py")


def main(argv: list[str]) -> torch.nn.Module:
    """Bad input (configs, data folder, checkpoints) ends in one `error: ...` line and exit status 2; Ctrl-C in
    one line saying where the run stopped and what it saved, and exit status 130 (`training.interrupt`)."""
    before_training = "interrupted before training started: nothing saved"
    with input_errors_as_messages(), InterruptWatch() as interrupts, \
            interruption_as_message(lambda: before_training), cpu_threads(), op_build_watch():
        return train(argv, interrupts)


def check_launch(argv: list[str], world_size: int) -> None:
    """`check_inputs` for a run of `world_size` processes, before they are started (launch.py)."""
    args = read_args(argv)
    args.world_size = world_size
    check_seed(args.seed, world_size)
    with warnings.catch_warnings():  # the processes give choose_precision's warnings themselves
        warnings.simplefilter("ignore")
        choose_precision(args)
    check_inputs(args)


def check_inputs(args) -> None:
    """What is checked before the model is built (the configs, the save folder, the data and caches against the
    process count); sets the resolved optimizer config and `args.precomputed_inputs`."""
    for flag, value in (("--cfg-parallel", args.cfg_parallel), ("--sequence-parallel", args.sequence_parallel)):
        if value != 1:
            raise InputError(f"{flag} {value}: a sampling option (sample_video.py); training splits data only "
                             "(first_stage_config cp_size splits the VAE encode)")
    for flag, value in (("--video2video", args.video2video or None), ("--strength", args.strength)):
        if value is not None:
            raise InputError(f"{flag} is a sampling option (sample_video.py): validation videos during training are "
                             "text- or image-to-video; leave it out of the training command and configs")
    args.first_block_cache = first_block_cache_threshold(args.first_block_cache, args.base)
    if args.first_block_cache and is_zero3(args):
        raise InputError(f"--first-block-cache {args.first_block_cache} with ZeRO-3: every rank samples its own "
                         "validation batch and gathers each layer's parameters as it runs it, so ranks skipping "
                         "different layers would wait on each other; use ZeRO stage 1 or 2, or leave it at 0")
    if args.save is not None:
        check_writable_folder(args.save, "--save")
        check_not_an_input(args.save, "--save", run_inputs(args), contains_allowed=True)
    if args.load is not None:
        check_load_folder(args)
    if args.wandb and not args.summary_dir:
        # unlike SAT, whose wandb.init(dir="") falls back to /tmp/wandb: the wandb run goes beside TensorBoard's runs/
        args.summary_dir = "."
    check_deepspeed_config(args.deepspeed_config, args.base)  # before the model is built
    data_config = getattr(args, "data_config", None)
    if data_config is not None:
        check_data_config(data_config, args.base)
    read_engine_config(args.model_config, args.base)  # the engine's keys (ofs, latent_input, ...), before the build
    check_sigma_sampler_groups(args.model_config, args.world_size // args.model_parallel_size, args.base)
    check_data_shape(args)
    args.deepspeed_config = resolve_optimizer_config(args.deepspeed_config, torch.cuda.is_available())
    check_zero3_optimizer(args.deepspeed_config)
    # Latent caches among the datasets are checked here, before the model is built; all caches: no T5, no VAE encoder.
    args.precomputed_inputs = check_run_inputs(args, engine_dtype(args))


def train(argv: list[str], interrupts: InterruptWatch) -> torch.nn.Module:
    """The run; each forward step first raises a Ctrl-C Python lost (`interrupts.check`)."""
    set_rank_environment()
    args = get_args(argv)
    check_inputs(args)
    datasets = RunDatasets(args.data_config)
    for path in dict.fromkeys([*(args.train_data or []), *(args.valid_data or [])]):
        datasets(path, args)  # listed before the model is built (a folder's errors come first); SAT reuses them
    # DeepSpeed's comm layer wraps the process group even when torch.distributed was set up earlier in-process.
    deepspeed.init_distributed(dist_backend=args.distributed_backend)
    # ZeRO-3: the engine is built here, whole, and partitioned by deepspeed.initialize (see training.zero3).
    model = build_engine(args, SATVideoDiffusionEngine) if is_zero3(args) else SATVideoDiffusionEngine
    with cpu_compat() as shimmed, RoutedSatLoop(args) as routed, BucketedLoaders(), \
            interruption_as_message(lambda: stop_line(args)):
        if shimmed:
            print_rank0("no CUDA: SAT's timers run without torch.cuda.synchronize")
        return training_main(
            args,
            model_cls=model,
            forward_step_function=interrupts.checked(routed.wrap_forward_step(forward_step)),
            forward_step_eval=interrupts.checked(partial(
                forward_step_eval, only_log_video_latents=args.only_log_video_latents,
                every_rank_samples=is_zero3(args), summary_writer=lambda: routed.summary_writer)),
            create_dataset_function=datasets,
            # called once args.save names the run's folder, after the load: a resumed run goes on in its folder
            init_function=lambda sat_args, _model: claim_save_folder(sat_args, routed.continued_folder),
        )


if __name__ == "__main__":
    main(sys.argv[1:])
