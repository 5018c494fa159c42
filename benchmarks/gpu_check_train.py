"""gpu_check's fine-tuning measurements: train_video.py's SAT + DeepSpeed loop (ZeRO-2, sat.ops.FusedEmaAdam on a
GPU) run in this process on one synthetic video, timed per step; then the checkpoint it saved (EMA included) is
loaded back into the engine and sampled from.

The configs are the released ones (configs/sft.yaml with the model's YAML), with batch 1, activation
checkpointing, data loading inside the step (num_workers 0) and a checkpoint saved at the last step.
"""

import copy
import glob
import statistics
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks.gpu_check_setup import PROMPT, REPO, SFT_YAML, Meter, RunSize
from benchmarks.gpu_check_table import RowWriter
from model_family import sampling_shape
from checkpoints.sat_checkpoint import load_sat_checkpoint, read_checkpoint_states
from video_sampling import encode_prompt

# The training runs load a two-layer T5 of the XXL width (gpu_check_setup.ensure_weights): peak memory leaves out
# the real T5-XXL's weights, which the reference keeps resident while training from videos.
T5_STANDIN_NOTE = "T5: a two-layer stand-in of the XXL width (the T5-XXL's 4.8B fp16 weights not included)"


@contextmanager
def timed_sat_loop(meter: Meter, found: dict):
    """SAT's `train_step` and our checkpoint save, timed for the block (module globals restored on exit).
    Peak memory is reset when the first step starts, so it covers the steps (weights and optimizer included)."""
    from sat.training import deepspeed_training

    from training import sat_loop

    original_step, original_save = deepspeed_training.train_step, sat_loop.save_training_checkpoint
    found.update(step_s=[], peak=0.0, save_s=0.0)

    def train_step(*args, **kwargs):
        if not found["step_s"]:
            meter.reset_peak()
        start = meter.now()
        result = original_step(*args, **kwargs)
        found["step_s"].append(meter.now() - start)
        found["peak"] = max(found["peak"], meter.peak_gib())
        return result

    def save_training_checkpoint(*args, **kwargs):
        with meter.timed(found, "save_s"):
            return original_save(*args, **kwargs)

    deepspeed_training.train_step, sat_loop.save_training_checkpoint = train_step, save_training_checkpoint
    try:
        yield found
    finally:
        deepspeed_training.train_step, sat_loop.save_training_checkpoint = original_step, original_save


def write_run_config(work: Path, name: str, config, weights: Path, data: Path, size: RunSize, dtype: str,
                     save: bool, save_optimizer: bool, buckets: list[list[int]] | None = None) -> list[str]:
    """--base files for train_video.py: the model section, configs/sft.yaml, and this run's overrides (`buckets`:
    data buckets instead of one size, docs/buckets.md)."""
    config = copy.deepcopy(config)
    config.network_config.params.transformer_args.checkpoint_activations = True
    sampler = config.sampler_config.params
    sampler.num_steps = sampler.guider_config.params.num_steps = 1  # the load-back check samples one step
    model_path = work / f"{name}-model.yaml"
    OmegaConf.save(OmegaConf.create({"model": config}), model_path)
    override = work / f"{name}-run.yaml"
    steps = size.train_steps
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(weights / "transformer"), "train_data": [str(data)], "valid_data": None,
                 "save": str(work / f"ckpt-{name}") if save else None, "save_interval": steps, "train_iters": steps,
                 "log_interval": steps, "experiment_name": name, "summary_dir": str(work), "num_workers": 0,
                 "checkpoint_activations": True,
                 "no_save_optim": not save_optimizer},
        "data": {"params": {"max_num_frames": size.video_frames, "video_size": list(size.video_size)} if buckets is None
                 else {"max_num_frames": None, "video_size": None, "buckets": buckets}},
        "deepspeed": {"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": dtype == "fp16"},
                      "bf16": {"enabled": dtype == "bf16"}},
    }), override)
    return [str(model_path), str(REPO / SFT_YAML), str(override)]


BUCKETS_YAML = "configs/sft_1.5_buckets.yaml"


def bucket_list(size: RunSize) -> list[list[int]]:
    """The buckets of configs/sft_1.5_buckets.yaml (the smoke run: its tiny size at two lengths). The synthetic clip
    (8 fps, configs/sft.yaml's fps) fills the longest length of its ratio: 81x768x1360 on a GPU."""
    if size.smoke:
        return [[size.video_frames, *size.video_size], [5, *size.video_size]]
    return OmegaConf.to_container(OmegaConf.load(REPO / BUCKETS_YAML).data.params.buckets)


def train(work: Path, name: str, bases: list[str], size: RunSize, meter: Meter) -> dict:
    """Run train_video.main on `bases` (see write_run_config); returns step times, peak memory, save time, the
    DeepSpeed engine and the checkpoint folder (None when not saved)."""
    import train_video

    with timed_sat_loop(meter, {}) as found:
        model = train_video.main(["--base", *bases, "--seed", "1"])
    if len(found["step_s"]) != size.train_steps:
        raise RuntimeError(f"{name}: expected {size.train_steps} training steps, timed {len(found['step_s'])}")
    found["model"] = model
    found["folder"] = next(iter(glob.glob(str(work / f"ckpt-{name}" / f"{name}-*"))), None)
    return found


def precompute_cache(work: Path, name: str, bases: list[str], data: Path, meter: Meter) -> tuple[Path, float]:
    """tools/precompute.py on the run's configs: the clip's VAE posterior and T5 embedding, cached; its seconds."""
    from latent_cache.from_configs import precompute_from_configs

    timing = {}
    with meter.timed(timing, "precompute"):
        cache = precompute_from_configs(bases, str(work / f"cache-{name}"), [str(data)], overwrite=False)[0]
    return cache, timing["precompute"]


def report_training(rows: RowWriter, what: str, found: dict, meter: Meter, size: RunSize, note: str = "") -> None:
    times = found["step_s"]
    timed = times[1:] or times
    label = f"median of steps 2..{len(times)}" if len(times) > 1 else "one step, warm-up included"
    shape = f"{size.video_frames}x{size.video_size[0]}x{size.video_size[1]}, batch 1, activation checkpointing"
    rows.add(f"{what}: s/step ({label})", statistics.median(timed), "s", note=shape + (f"; {note}" if note else ""))
    rows.add(f"{what}: peak memory over the steps", found["peak"], meter.memory_unit, note=note)
    skipped = getattr(found["model"], "skipped_steps", None)
    if skipped is not None:
        rows.add(f"{what}: steps skipped by the loss scaler (fp16 overflow)", float(skipped), "steps")


def ema_view(folder: Path, iteration: int, work: Path) -> Path:
    """A SAT layout (`latest` + `<n>/`) around `<iteration>-ema/`, so our loader reads the EMA weights."""
    view = work / f"{folder.name}-ema-view"
    view.mkdir(exist_ok=True)
    (view / "latest").write_text(str(iteration))
    link = view / str(iteration)
    if not link.exists():
        link.symlink_to(folder / f"{iteration}-ema", target_is_directory=True)
    return view


def sample_one_step(engine, size: RunSize) -> bool:
    """One guided sampling step from the prompt (the training config's sampler has one step); whether the latents
    are finite (random weights in fp16 may overflow: reported, not an error)."""
    cond, uc = encode_prompt(engine, PROMPT)
    channels = int(engine.model_config.network_config.params.in_channels)
    shape = sampling_shape(engine.model_config, size.latent_frames, channels)
    latents = engine.sample(cond, uc, 1, shape, torch.Generator().manual_seed(0))
    return bool(torch.isfinite(latents).all())


def finite_note(finite: bool) -> str:
    return "latents finite" if finite else "latents have non-finite values (random weights)"


def check_load_back(rows: RowWriter, what: str, found: dict, work: Path, meter: Meter, size: RunSize,
                    optimizer_saved: bool) -> None:
    """Load the saved checkpoint (and its EMA weights, when written) into the engine and sample one step."""
    folder = Path(found["folder"])
    engine = getattr(found["model"], "module", found["model"])  # the DeepSpeed engine wraps ours
    engine.eval()
    rows.add(f"{what}: checkpoint save (weights{', optimizer states' if optimizer_saved else ''})",
             found["save_s"], "s")
    iteration = int((folder / "latest").read_text())
    timing = {}
    with torch.no_grad(), meter.timed(timing, "load_sample"):
        load_sat_checkpoint(engine, folder)
        finite = sample_one_step(engine, size)
    rows.add(f"{what}: load the checkpoint back + 1 sampling step", timing["load_sample"], "s", note=finite_note(finite))
    ema_file = folder / f"{iteration}-ema" / "mp_rank_00_model_states.pt"
    if not ema_file.is_file():
        rows.add(f"{what}: EMA weights saved as {iteration}-ema/", None, "", note="not written: " + (
            "torch AdamW on the CPU keeps no EMA" if not meter.cuda else "FusedEmaAdam took no step (see log)"))
        return
    trained = engine.state_dict()
    ema = read_checkpoint_states(ema_file)["module"]
    gap = max((value.to(trained[key].device).float() - trained[key].float()).abs().max().item()
              for key, value in ema.items())
    with torch.no_grad():
        load_sat_checkpoint(engine, ema_view(folder, iteration, work))
        finite = sample_one_step(engine, size)
    rows.add(f"{what}: EMA weights ({iteration}-ema/) loaded back and sampled; max |EMA - weights|", gap, "",
             note=f"0 would mean the EMA copy is the weights; {finite_note(finite)}")
