"""Command-line and YAML arguments: SAT's parser plus the CogVideoX model/sampling options.

`get_args(args_list)` parses the command line, merges the `--base` YAML files in order (OmegaConf),
lets their `args:` section override matching options, exposes `model:` / `deepspeed:` / `data:` as
`args.model_config` / `args.deepspeed_config` / `args.data_config`, initialises torch.distributed
(gloo without CUDA, nccl with it; one process works without a launcher) and SAT's model-parallel
groups, and seeds the RNGs with `seed + data-parallel rank`.

Beyond the reference (docs/faithfulness.md): unknown `args:` keys and top-level sections are errors naming the file
and key, options it never reads are refused away from their defaults (`check_options_are_read`), a boolean `false`
parses as False (not True, as its `type=bool` does), and fp16 without CUDA falls back to fp32 with a warning.
"""

import argparse
import os
import warnings
from typing import Callable

import omegaconf
import torch
from omegaconf import OmegaConf
from sat import mpu
from sat.arguments import add_data_args, add_evaluation_args, add_training_args, initialize_distributed, set_random_seed
from sat.helpers import print_rank0

from input_errors import InputError
from option_ranges import check_ranges
from parallel.threads import THREADS_NOTE
from sgm.util import ConfigError, load_config_file, unknown_key_error

CONFIG_SECTIONS = ("args", "model", "deepspeed", "data")


def add_config_file_args(group: argparse._ArgumentGroup) -> None:
    """Options of both entry scripts: the config files and the device."""
    group.add_argument("--base", type=str, nargs="*", default=[], help="YAML config files, merged in order")
    group.add_argument("--device", type=int, default=-1, help="CUDA device index; -1 picks LOCAL_RANK (or CPU)")


def add_model_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("model", "model configuration")
    add_config_file_args(group)
    group.add_argument("--model-parallel-size", type=int, default=1, help="size of the model parallel group")
    return parser


def parse_bool(text: str) -> bool:
    """`true/false`, `yes/no`, `1/0` (any case) for options that take a boolean value (argparse's `type=bool` makes
    `False` true)."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(str(text).lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


# Options the reference parses and never reads: accepted at their default only, refused otherwise (option: default).
UNREAD_OPTIONS = {
    "force_pretrain": False, "debug": False, "log_image": True, "input_dir": None, "final_size": 2048,
    "sdedit": False, "grid_num_rows": 1, "lcm_steps": None, "only_save_latents": False,
}
# Where an unread option's purpose is served here under another name.
UNREAD_OPTION_ROUTES = {"sdedit": "; video-to-video (SDEdit) is --video2video --strength S"}


def check_options_are_read(args: argparse.Namespace, paths: list[str]) -> None:
    """Refuse options that would be silently ignored: one the reference parses and never reads (UNREAD_OPTIONS) set
    away from its default, and `force_inference: false` (missing VAE/T5 keys are always expected here: those
    weights load from their own files; missing transformer keys are always an error)."""
    for name, default in UNREAD_OPTIONS.items():
        if getattr(args, name) != default:
            raise ConfigError(
                f"--{name.replace('_', '-')} (or args.{name} in {paths}) is {getattr(args, name)!r}: the reference "
                f"parses this option and never reads it, and it is not implemented here; leave it at {default!r}"
                f"{UNREAD_OPTION_ROUTES.get(name, '')}"
            )
    if not args.force_inference:
        raise ConfigError(
            f"args.force_inference is false in {paths}: the reference then refuses checkpoints without VAE/T5 weights, "
            "i.e. every released transformer checkpoint; here those keys are always expected missing: remove it"
        )


def add_sampling_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The sampling options: `sample_video.py --help` shows these (and `add_sampling_model_args`); training reads the
    frame count, fps and latent channels for its validation videos. A new sampling option is one line here."""
    group = parser.add_argument_group("sampling", "sampling configuration")
    group.add_argument("--output-dir", type=str, default="samples", help="videos go to <dir>/<index>_<prompt>/<n>/000000.mp4 "
                       "(an earlier run's video there is kept: the new one is 000000-2.mp4, ...)")
    group.add_argument("--input-type", type=str, default="cli", choices=["cli", "txt"],
                       help="prompts typed at the terminal (cli) or read from --input-file (txt)")
    group.add_argument("--input-file", type=str, default="input.txt", help="prompt file, one prompt per line")
    group.add_argument("--sampling-num-frames", type=int, default=32, help="latent frames to sample (13 -> 49 video frames)")
    group.add_argument("--sampling-fps", type=int, default=8, help="frame rate of the written videos")
    group.add_argument("--latent-channels", type=int, default=32, help="channels of the sampled latent (16 for CogVideoX 1.0)")
    group.add_argument("--image2video", action="store_true", help="prompt lines are 'text@@image_path' (CogVideoX-5B-I2V)")
    group.add_argument("--video2video", action="store_true",
                       help="prompt lines are 'text@@video_path': the video, noised to --strength, is restyled "
                            "(SDEdit; text-to-video models: 2B, 5B, 1.5-5B)")
    group.add_argument("--strength", type=float, default=None, metavar="S",
                       help="--video2video: 0 < S <= 1, the share of the sampler's steps run from the noised video "
                            "(default 0.8, diffusers'; 1 starts from pure noise)")
    group.add_argument("--sampling-image-size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                       help="pixel size of the sampled video; must equal 8x the config's latent size (the released "
                            "inference.yaml sets 480 720; the reference ignores it)")
    group.add_argument("--image-short-side", type=int, default=None, metavar="PIXELS",
                       help="CogVideoX1.5 image-to-video: the image's short side after resizing (default 768, the "
                            "reference's); the long side keeps the aspect ratio, to the nearest multiple of 16")
    group.add_argument("--cfg-parallel", type=int, default=1, metavar="N",
                       help="1 or 2: with 2, the unconditional and conditional guidance branches of one video run on "
                            "two processes (processes = data x cfg x sequence)")
    group.add_argument("--sequence-parallel", type=int, default=1, metavar="N",
                       help="split each DiT call's tokens over N processes (Ulysses); N must divide the attention heads")
    group.add_argument("--first-block-cache", default=0.0, metavar="T",
                       help="skip the DiT's layers after the first while its residual changes by at most T (relative "
                            "mean absolute change, diffusers' first-block cache); 0 (default) = off; training: for the "
                            "validation videos")
    return parser


def add_sampling_model_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """SAT's options that sampling reads, with help written for sampling. No defaults here: `build_sampling_parser`
    takes every default from the training parser (SAT's), so both scripts read the same values."""
    group = parser.add_argument_group("model", "config files, checkpoint, seed and precision")
    add_config_file_args(group)
    group.add_argument("--load", type=str, help="checkpoint to sample from: a transformer folder with 'latest' (e.g. "
                       "CogVideoX-2b-sat/transformer) or a fine-tuning run folder (<save>/<experiment_name>-MM-DD-HH-MM; "
                       "a LoRA run loads its recorded base transformer first), or one of its iteration folders "
                       "(<folder>/<iteration>)")
    group.add_argument("--seed", type=int, help="seed of the sampling noise: one seed, one video per prompt and sample")
    group.add_argument("--batch-size", type=int, help="videos per prompt, each with its own seed")
    group.add_argument("--fp16", action="store_true", help="run the model in fp16 (falls back to fp32 without CUDA)")
    group.add_argument("--bf16", action="store_true", help="run the model in bf16")
    return parser


def add_reference_unread_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options the reference parses and never reads (UNREAD_OPTIONS): kept so that config files setting them at
    their defaults load; refused away from them (`check_options_are_read`)."""
    group = parser.add_argument_group("reference", "options of the reference that nothing reads")
    group.add_argument("--force-pretrain", action="store_true", help="not supported (the reference never reads it)")
    group.add_argument("--debug", action="store_true", help="not supported (the reference never reads it)")
    group.add_argument("--log-image", type=parse_bool, default=True, help="not supported (the reference never reads it)")
    group.add_argument("--input-dir", type=str, default=None, help="not supported (the reference never reads it)")
    group.add_argument("--final-size", type=int, default=2048, help="not supported (the reference never reads it)")
    group.add_argument("--sdedit", action="store_true", help="not supported (the reference never reads it)")
    group.add_argument("--grid-num-rows", type=int, default=1, help="not supported (the reference never reads it)")
    group.add_argument("--force-inference", type=parse_bool, nargs="?", const=True, default=True,
                       help="the reference's switch to load checkpoints without VAE/T5 weights; always on here")
    group.add_argument("--lcm_steps", type=int, default=None, help="not supported (the reference never reads it)")
    group.add_argument("--only-save-latents", type=parse_bool, default=False,
                       help="not supported (the reference never reads it)")
    return parser


def add_training_run_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("training run", "validation videos and memory")
    group.add_argument("--only-log-video-latents", type=parse_bool, default=False,
                       help="training-time eval videos: keep the sampled latents only, skip the VAE decode")
    group.add_argument("--gc-every-step", action="store_true", help="run gc.collect() every training step as the reference does")
    return parser


def add_finetune_checkpoint_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """What fine-tuning checkpoints hold (beyond the reference, which saves the whole engine every time)."""
    group = parser.add_argument_group("finetune checkpoints", "contents of the checkpoints train_video.py writes")
    group.add_argument("--lora-save-base", action="store_true",
                       help="LoRA checkpoints also hold the frozen transformer (self-contained; SAT's own loader reads "
                            "them); by default they hold the LoRA matrices and record the base checkpoint folder")
    group.add_argument("--no-save-optim", action="store_true",
                       help="do not write optimizer states (smaller checkpoints; a resumed run restarts Adam's moments)")
    return parser


def escape_literal_percents(actions: list[argparse.Action]) -> None:
    """argparse formats help strings with `%`: SAT's `--warmup` help ("1% of all") breaks `--help`. The help
    strings SAT and DeepSpeed register use no `%(name)s` fields, so each `%` in them is a literal one."""
    for action in actions:
        if action.help:
            action.help = action.help.replace("%", "%%")


TRAINING_EXAMPLE = "python train_video.py --base configs/cogvideox_2b_lora.yaml configs/sft.yaml --seed 42"
LAUNCHER_OPTIONS = ("--local_rank", "--iterable-dataset", "--iterable-dataset-eval")  # set by launchers / SAT's own data


def build_parser() -> argparse.ArgumentParser:
    """The training parser (`train_video.py`): our options, then SAT's and DeepSpeed's. `--help` shows the training
    options and an example; the sampling options (read for validation videos), the reference's unread ones,
    DeepSpeed's helper flags and what launchers set are accepted but not shown (as `build_sampling_parser` hides the
    training options)."""
    import deepspeed

    parser = argparse.ArgumentParser(
        prog="train_video.py", usage="%(prog)s --base CONFIG [CONFIG ...] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Fine-tune CogVideoX (LoRA or full) with DeepSpeed.\n\nexample:\n  {TRAINING_EXAMPLE}",
        epilog="Each option may also be set in the args: section of a config file (e.g. train_iters: 200); the\n"
               "model:, data: and deepspeed: sections hold the rest.",
    )
    unlisted = (add_sampling_config_args, add_reference_unread_args, deepspeed.add_config_arguments)
    for add_group in (add_model_config_args, add_sampling_config_args, add_finetune_checkpoint_args,
                      add_training_run_args, add_reference_unread_args):
        parser = add_unlisted(parser, add_group) if add_group in unlisted else add_group(parser)
    ours = len(parser._actions)
    for add_group in (add_training_args, add_evaluation_args, add_data_args, deepspeed.add_config_arguments):
        parser = add_unlisted(parser, add_group) if add_group in unlisted else add_group(parser)
    for action in parser._actions:
        if set(action.option_strings) & set(LAUNCHER_OPTIONS):
            action.help = argparse.SUPPRESS
    escape_literal_percents(parser._actions[ours:])
    return parser


def add_unlisted(parser: argparse.ArgumentParser, add_group: Callable) -> argparse.ArgumentParser:
    """`add_group`'s options, accepted but not listed by `--help` (argparse lists the parser's groups)."""
    before = len(parser._action_groups)
    parser = add_group(parser)
    del parser._action_groups[before:]
    return parser


def build_sampling_parser() -> argparse.ArgumentParser:
    """The parser of `sample_video.py`: only the options sampling reads are offered (and shown by `--help`); every
    other option of the training parser is there at its default, for SAT's model builder and for `args:` keys of the
    config files (which load as in training)."""
    parser = argparse.ArgumentParser(
        prog="sample_video.py", description="Sample videos from text (or text@@image) prompts with CogVideoX.",
        epilog="The config files' args: section may also set SAT's other options (e.g. mode: inference), as in training.",
    )
    for add_group in (add_sampling_model_args, add_sampling_config_args):
        parser = add_group(parser)
    parser.set_defaults(**vars(build_parser().parse_args([])))
    return parser


def load_configs(paths: list[str]) -> omegaconf.DictConfig:
    """Merge YAML files in order; unknown top-level sections are an error naming the file."""
    configs = []
    for path in paths:
        config = load_config_file(path)
        unknown = sorted(set(config) - set(CONFIG_SECTIONS))
        if unknown:
            raise ConfigError(f"{path}: unknown top-level section(s) {unknown}; allowed: {list(CONFIG_SECTIONS)}")
        configs.append(config)
    return OmegaConf.merge(*configs) if configs else OmegaConf.create()


def explicit_options(args_list: list[str] | None, build: Callable[[], argparse.ArgumentParser] = build_parser) -> set[str]:
    """Names of the options actually typed on the command line (not left at their defaults)."""
    parser = build()  # a fresh parser whose defaults we may change
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    parser._defaults.clear()
    return set(vars(parser.parse_args(args_list)))


def apply_config_to_args(
    args: argparse.Namespace, config: omegaconf.DictConfig, paths: list[str], typed: set[str] = frozenset()
) -> argparse.Namespace:
    """`args:` overrides option defaults; sections become attributes.

    Beyond the reference (where the YAML also beats what was typed): an option typed on the command line (`typed`)
    wins over the YAML, so `--sampling-num-frames 9` or `--output-dir x` take effect with the released configs.
    """
    args_section = config.get("args", OmegaConf.create())
    for key in args_section:
        if key in typed:
            print_rank0(f"--{key.replace('_', '-')} from the command line overrides args.{key} of the config files")
            continue
        if not hasattr(args, key):
            raise unknown_key_error(paths, f"args.{key}", vars(args), "matches no command-line option")
        value = args_section[key]
        if isinstance(value, (omegaconf.DictConfig, omegaconf.ListConfig)):
            value = OmegaConf.to_object(value)
        setattr(args, key, value)
    if "model" in config:
        args.model_config = config.model
    if "deepspeed" in config:
        args.deepspeed_config = OmegaConf.to_object(config.deepspeed)
    if "data" in config:
        args.data_config = config.data
    return args


def choose_device_and_backend(args: argparse.Namespace) -> None:
    """CUDA device from LOCAL_RANK, else CPU with gloo (the reference assumes CUDA and nccl)."""
    args.cuda = torch.cuda.is_available()
    args.rank = int(os.getenv("RANK", "0"))
    args.world_size = int(os.getenv("WORLD_SIZE", "1"))
    if args.local_rank is None:
        args.local_rank = int(os.getenv("LOCAL_RANK", "0"))
    if not args.cuda:
        args.device = "cpu"
        args.distributed_backend = "gloo"
        return
    if args.device == -1:
        args.device = args.local_rank
    if args.local_rank != args.device and args.mode != "inference":
        raise InputError(
            f"LOCAL_RANK ({args.local_rank}) and --device ({args.device}) differ; outside inference use "
            "CUDA_VISIBLE_DEVICES=x to pick a GPU for single-GPU training"
        )


def choose_precision(args: argparse.Namespace) -> None:
    """fp16/bf16 from the deepspeed section when training; fp16 without CUDA falls back to fp32."""
    if args.mode != "inference":
        args.deepspeed = True
        if args.deepspeed_config is None:
            raise ConfigError("training needs a 'deepspeed:' section in one of the --base files (see configs/sft.yaml)")
        ds = args.deepspeed_config
        args.fp16 = bool(ds.get("fp16", {}).get("enabled", False))
        args.bf16 = bool(ds.get("bf16", {}).get("enabled", False))
        args.batch_size = ds.get("train_micro_batch_size_per_gpu", args.batch_size)
        args.gradient_accumulation_steps = ds.get("gradient_accumulation_steps", args.gradient_accumulation_steps)
        optimizer_params = ds.get("optimizer", {}).get("params", {})
        args.lr = optimizer_params.get("lr", args.lr)
        args.weight_decay = optimizer_params.get("weight_decay", args.weight_decay)
        args.deepspeed_activation_checkpointing = bool(args.checkpoint_activations)
    if args.fp16 and args.bf16:
        raise ConfigError("fp16 and bf16 are both enabled; pick one")
    if args.fp16 and not torch.cuda.is_available():
        warnings.warn("fp16 was requested but CUDA is not available; falling back to fp32 on the CPU")
        args.fp16 = False
        if isinstance(args.deepspeed_config, dict) and "fp16" in args.deepspeed_config:
            args.deepspeed_config["fp16"]["enabled"] = False


def check_seed(seed: int, world_size: int) -> None:
    """Rank r seeds every RNG with `seed + r`: SAT's set_random_seed asserts it is > 0 (matches the reference, which
    stops with a bare AssertionError on 0) and numpy takes seeds below 2**32."""
    largest = 2**32 - world_size
    if not 1 <= seed <= largest:
        raise ConfigError(f"--seed must be an integer from 1 to {largest} (SAT seeds rank r with seed + r and requires "
                          f"it > 0; numpy requires it < 2**32), got {seed}")


def read_args(
    args_list: list[str] | None = None, build: Callable[[], argparse.ArgumentParser] = build_parser
) -> argparse.Namespace:
    """Parse arguments (with `build`'s parser: the training one, or `build_sampling_parser`), merge the configs and
    check the options and their ranges; nothing about the processes is touched (`launch.py` calls this
    before it starts them)."""
    args = build().parse_args(args_list)
    config = load_configs(args.base)
    args = apply_config_to_args(args, config, args.base, explicit_options(args_list, build))
    check_options_are_read(args, args.base)
    check_ranges(args, config, args.base)

    if args.train_iters is not None and args.epochs is not None:
        raise ConfigError("only one of train_iters and epochs may be set")
    if args.train_iters is None and args.epochs is None:
        args.train_iters = 10000
    if args.train_data_weights is not None and len(args.train_data_weights) != len(args.train_data):
        raise ConfigError(f"train_data_weights {args.train_data_weights} must match train_data {args.train_data}")
    # DeepSpeed's activation checkpointing is configured with one checkpoint per transformer layer.
    args.num_layers = OmegaConf.select(config, "model.network_config.params.num_layers", default=1)
    return args


def get_args(
    args_list: list[str] | None = None, build: Callable[[], argparse.ArgumentParser] = build_parser
) -> argparse.Namespace:
    """`read_args`, then the device, precision and distributed state, and the RNGs seeded."""
    args = read_args(args_list, build)
    choose_device_and_backend(args)
    choose_precision(args)
    print_rank0(f"using world size: {args.world_size}, device: {args.device}, backend: {args.distributed_backend}, "
                f"torch threads per process: {torch.get_num_threads()} ({THREADS_NOTE})")

    check_seed(args.seed, args.world_size)
    initialize_distributed(args)
    args.base_seed = args.seed
    args.seed = args.seed + mpu.get_data_parallel_rank()
    set_random_seed(args.seed)
    return args
