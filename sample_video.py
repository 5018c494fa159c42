"""Sample videos from text prompts: `python sample_video.py --base configs/cogvideox_2b.yaml configs/inference.yaml`.

Parse, build, run; the work lives in `video_sampling.py` (docs/sampling.md). Unlike the reference, `--seed` controls the
sampling noise (`video_sampling.sample_seed`) and the inputs (checkpoint folder, T5 folder, VAE file, sampler config,
frame count, prompt file, output folder) are checked before the model is built; an existing video is never replaced
(docs/output_folders.md). Bad input ends in one `error: ...` line and exit status 2 (`input_errors`); any other
exception keeps its traceback. Ctrl-C ends the run with one line saying what it was doing and what it wrote, and exit
status 130.
"""

import sys
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf
from sat.model.base_model import get_model

from arguments import build_sampling_parser, check_seed, get_args, read_args
from diffusion_video import SATVideoDiffusionEngine
from model_family import check_sampling_frames, sampling_image_size_for
from dit.first_block_cache import first_block_cache_threshold
from engine_config import read_engine_config
from image_to_video.conditioning import check_image_prompts, check_network_channels, check_text_prompts
from input_errors import InputError, input_errors_as_messages
from interrupt_watch import InterruptWatch
from op_build_watch import op_build_watch
from checkpoints.output_folder import check_not_an_input
from parallel.layout import ParallelLayout
from parallel.sampling import ParallelSampling, check_decode_split, check_parallel_sampling
from parallel.threads import cpu_threads
from checkpoints.sat_checkpoint import checkpoint_path, load_sat_checkpoint
from sgm.modules.encoders.modules import check_t5_folder
from sgm.util import instantiate_from_config
from vae_modules.autoencoder import check_vae_file
from video_sampling import SamplingPlan, SamplingProgress, cli_prompts, read_prompts, sample_prompts
from video_to_video import check_strength_without_video2video, check_video2video, check_video_prompts, video_frame_count
from checkpoints.writable_folder import check_writable_folder

T5_TARGET = "sgm.modules.encoders.modules.FrozenT5Embedder"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report a run stopped by Ctrl-C


def configure_for_sampling(args) -> None:
    """As the reference: no model parallelism, no activation checkpointing, no per-rank timestep ranges. Unlike the
    reference (which forces cp_size 1 here), the config's cp_size splits the VAE decode over that many processes."""
    config = args.model_config
    config.network_config.params.transformer_args.model_parallel_size = 1
    config.network_config.params.transformer_args.checkpoint_activations = False
    if "loss_fn_config" in config:
        config.loss_fn_config.params.sigma_sampler_config.params.uniform_sampling = False


def check_model_parts(config) -> None:
    """What the engine reads besides the transformer, checked before the transformer is built: the T5 folders, the
    VAE file, and the sampler config (built here: it is small)."""
    if "sampler_config" not in config:
        raise InputError("the model config has no sampler_config; sampling needs one (see configs/cogvideox_2b.yaml)")
    instantiate_from_config(config.sampler_config)
    for embedder in OmegaConf.select(config, "conditioner_config.params.emb_models", default=None) or []:
        model_dir = OmegaConf.select(embedder, "params.model_dir", default=None)
        if embedder.get("target") == T5_TARGET and model_dir is not None:
            check_t5_folder(Path(model_dir).expanduser().resolve())
    vae_file = OmegaConf.select(config, "first_stage_config.params.ckpt_path", default=None)
    if vae_file is not None:
        check_vae_file(vae_file)


def check_prompt_lines(args):
    """What a prompt line must be: `text@@image_path` with --image2video, `text@@video_path` with --video2video,
    plain text without them."""
    if args.video2video:
        return partial(check_video_prompts, count=video_frame_count(args.model_config, args.sampling_num_frames),
                       fps=args.sampling_fps)
    if args.image2video:
        return partial(check_image_prompts, model_config=args.model_config, short_side=args.image_short_side)
    return check_text_prompts


def check_inputs(args) -> None:
    """Fail on bad paths and values before spending minutes building the model."""
    args.first_block_cache = first_block_cache_threshold(args.first_block_cache, args.base)
    read_engine_config(args.model_config, args.base)  # the model section's keys (e.g. a missing ofs value, a typo)
    if args.load is None:
        raise InputError("no checkpoint given: pass --load <transformer folder> or set args.load in a --base file")
    checkpoint_path(args.load)  # the folder, its 'latest' and the model-states file it names
    check_model_parts(args.model_config)
    check_parallel_sampling(args.model_config, args.world_size, args.cfg_parallel, args.sequence_parallel)
    check_decode_split(args.model_config, args.world_size, args.cfg_parallel * args.sequence_parallel, args.sampling_num_frames)
    if args.input_type == "cli" and args.cfg_parallel * args.sequence_parallel > 1:
        raise InputError("--cfg-parallel / --sequence-parallel need --input-type txt (each process reads the same "
                         "prompt file; prompts typed at the terminal reach one process only)")
    check_sampling_frames(args.model_config, args.sampling_num_frames)
    if args.video2video:
        args.strength = check_video2video(args.model_config, args.latent_channels, args.image2video, args.strength)
    else:
        check_strength_without_video2video(args.strength)
    check_network_channels(args.model_config, args.latent_channels, args.image2video)
    args.video_size = sampling_image_size_for(args.model_config, args.sampling_image_size, args.image2video,
                                              args.image_short_side)
    if args.input_type == "txt":
        prompts = read_prompts(args.input_file)  # raises on a missing, empty or non-UTF-8 file
        check_prompt_lines(args)([prompt.text for prompt in prompts])
    check_writable_folder(args.output_dir, "--output-dir")
    check_not_an_input(args.output_dir, "--output-dir", read_inputs(args), contains_allowed=True)


def read_inputs(args) -> list[tuple[str, str]]:
    """The folders and files sampling reads weights from, as (what, path): the checkpoint, the T5 folders, the VAE."""
    config = args.model_config
    inputs = [("the --load checkpoint", args.load)]
    for embedder in OmegaConf.select(config, "conditioner_config.params.emb_models", default=None) or []:
        if embedder.get("target") == T5_TARGET:
            inputs.append(("the T5 folder", OmegaConf.select(embedder, "params.model_dir", default=None)))
    inputs.append(("the VAE file", OmegaConf.select(config, "first_stage_config.params.ckpt_path", default=None)))
    return inputs


def check_launch(argv: list[str], world_size: int) -> None:
    """`check_inputs` for a run of `world_size` processes, before they are started (launch.py)."""
    args = read_args(argv, build_sampling_parser)
    args.world_size = world_size
    check_seed(args.seed, world_size)
    configure_for_sampling(args)
    check_inputs(args)


def main(argv: list[str]) -> None:
    progress = SamplingProgress(doing="reading the arguments")
    try:
        with input_errors_as_messages(), InterruptWatch() as interrupts, cpu_threads(), op_build_watch():
            sample(argv, progress, interrupts)
    except KeyboardInterrupt:
        print(f"\n{progress.summary()}", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_STATUS) from None


def sample(argv: list[str], progress: SamplingProgress, interrupts: InterruptWatch) -> None:
    args = get_args(argv, build_sampling_parser)
    configure_for_sampling(args)
    progress.doing = "checking the inputs"
    check_inputs(args)
    parallel = ParallelSampling(ParallelLayout(args.world_size, args.rank, args.cfg_parallel, args.sequence_parallel))
    progress.doing = "building the model"
    model = get_model(args, SATVideoDiffusionEngine)
    progress.doing = f"loading the checkpoint {args.load}"
    load_sat_checkpoint(model, args.load)
    model.eval()
    parallel.prepare(model)

    if args.input_type == "txt":
        prompts = read_prompts(args.input_file, parallel.layout.data_rank, parallel.layout.data)
    else:
        prompts = cli_prompts(check_prompt_lines(args))
    plan = SamplingPlan(
        num_latent_frames=args.sampling_num_frames,
        latent_channels=args.latent_channels,
        fps=args.sampling_fps,
        samples_per_prompt=args.batch_size,
        seed=args.base_seed,
        output_dir=args.output_dir,
        image2video=args.image2video,
        image_size=args.video_size,
        image_short_side=args.image_short_side,
        parallel=parallel,
        strength=args.strength,  # set by check_inputs for --video2video, else None
    )
    sample_prompts(model, prompts, plan, progress, interrupts)


if __name__ == "__main__":
    main(sys.argv[1:])
