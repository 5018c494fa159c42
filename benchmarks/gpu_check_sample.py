"""gpu_check's sampling measurements: the T5-XXL encode, our engine's sampling and VAE decode, and diffusers'
`CogVideoXPipeline` on the same converted weights and the same prompt embedding.

Both sides get one prompt embedding (made by the engine's T5 stand-in, see gpu_check_setup.ensure_weights) and
the all-zero unconditional embedding of the 2B sampler; the T5-XXL is timed on its own, with random weights of
its real shape, and is off the GPU while the video is sampled (our engine moves its T5 off after encoding,
as sample_video.py does).
"""

import argparse
import copy
import gc
import statistics
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.diffusers_peer import build_on, diffusers_pipeline, record_first_block_cache
from benchmarks.gpu_check_setup import PROMPT, Meter, RunSize
from benchmarks.gpu_check_table import RowWriter
from diffusion_video import SATVideoDiffusionEngine
from model_family import sampling_shape
from dit.first_block_cache import FirstBlockCacheRecord, FirstBlockCacheSettings
from dit_video_concat import DTYPES
from sample_video import configure_for_sampling
from checkpoints.sat_checkpoint import load_sat_checkpoint
from video_sampling import SamplingPlan, encode_prompt, generate_video, move_conditioning

# google/t5-v1_1-xxl's encoder (4.76B parameters); the smoke run takes tiny/t5.py's shape instead.
T5_XXL = {"d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 32128,
          "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "layer_norm_epsilon": 1e-6}
TEXT_LENGTH = 226
EXTRAPOLATE_TO = 50  # the released sampler's step count
GUIDANCE = {"guidance_scale": 6, "use_dynamic_cfg": True}  # the 2B sampler's DynamicCFG (scale 6, exp 5)


@contextmanager
def wrapped(obj, name: str, make_wrapper):
    """`obj.name` replaced by `make_wrapper(original)` on the instance for the block."""
    original = getattr(obj, name)
    setattr(obj, name, make_wrapper(original))
    try:
        yield
    finally:
        delattr(obj, name)


def free(meter: Meter) -> None:
    gc.collect()
    if meter.cuda:
        torch.cuda.empty_cache()


def steady_step(step_ends: list[float], start: float) -> float:
    """Median step time after the first (warm-up) step; the first step's time when only one ran."""
    times = [end - begin for begin, end in zip([start] + step_ends[:-1], step_ends)]
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def measure_t5(size: RunSize, meter: Meter, rows: RowWriter, dtype: str) -> None:
    """Encode the prompt and the empty prompt (226 tokens each, as get_unconditional_conditioning does) with a T5
    encoder of the real XXL shape and random weights, in the engine's dtype (the reference casts the T5 too)."""
    from transformers import T5Config, T5EncoderModel

    from tiny.t5 import T5_CONFIG

    shape = dict(T5_CONFIG) if size.smoke else {**T5_CONFIG, **T5_XXL}
    name = "T5 (tiny shape)" if size.smoke else "T5-XXL (random weights, real shape)"
    t5 = build_on(size.device, lambda: T5EncoderModel(T5Config(**shape))).to(DTYPES[dtype]).eval()
    tokens = torch.randint(0, shape["vocab_size"], (2, TEXT_LENGTH), generator=torch.Generator().manual_seed(0))
    tokens = tokens.to(size.device)
    timing = {}
    with torch.no_grad():
        t5(input_ids=tokens)  # warm-up
        meter.reset_peak()
        with meter.timed(timing, "encode"):
            t5(input_ids=tokens)
    rows.add(f"{name} encode, 2 x {TEXT_LENGTH} tokens, {dtype}", timing["encode"], "s",
             note="timed alone; both samplers below get the same prompt embedding")
    rows.add(f"{name} peak memory while encoding", meter.peak_gib(), meter.memory_unit)
    del t5
    free(meter)


def build_engine(config, weights: Path, size: RunSize, dtype: str) -> SATVideoDiffusionEngine:
    """As sample_video.py with SAT's get_model: built in fp32, cast as a whole (VAE and T5 included), moved to the device."""
    args = argparse.Namespace(model_config=copy.deepcopy(config), fp16=dtype == "fp16", bf16=dtype == "bf16")
    configure_for_sampling(args)  # as sample_video.py: no activation checkpointing, one process
    engine = SATVideoDiffusionEngine(args).to(DTYPES[dtype]).to(size.device)
    load_sat_checkpoint(engine, str(weights / "transformer"))
    return engine.eval()


def encode_and_offload_t5(engine: SATVideoDiffusionEngine, meter: Meter) -> tuple[dict, dict]:
    """The prompt's embeddings (on the CPU); the T5 leaves the GPU afterwards, as sample_prompts does."""
    cond, uc = encode_prompt(engine, PROMPT)
    engine.conditioner.to("cpu")
    free(meter)
    return move_conditioning(cond, torch.device("cpu")), move_conditioning(uc, torch.device("cpu"))


def sample_ours(engine: SATVideoDiffusionEngine, cond: dict, uc: dict, size: RunSize, meter: Meter, decode: bool) -> dict:
    """Sample one video with `size.sample_steps` steps (and decode it, moving the transformer off the GPU for the
    decode, when `decode`): step times, decode time, peak memory while sampling and while decoding."""
    step_ends, found = [], {}

    def stamping(denoise):
        def stamped(*args, **kwargs):
            out = denoise(*args, **kwargs)
            step_ends.append(meter.now())
            return out
        return stamped

    def measured(decode_chunked):
        def decoding(*args, **kwargs):
            found["sampling_peak"] = meter.peak_gib()
            meter.reset_peak()
            with meter.timed(found, "decode_s"):
                video = decode_chunked(*args, **kwargs)
            found["decode_peak"] = meter.peak_gib()
            return video
        return decoding

    padding = engine.family.padding_latent_frames  # CogVideoX1.5: the padding frame 0, sampled and dropped
    plan = SamplingPlan(size.latent_frames + padding, int(engine.model_config.network_config.params.in_channels),
                        fps=8, samples_per_prompt=1, seed=0, output_dir="unused",
                        image_size=tuple(size.video_size) if padding else None)
    meter.reset_peak()
    with wrapped(engine, "denoise", stamping), wrapped(engine, "decode_first_stage_chunked", measured):
        start = meter.now()
        if decode:
            video = generate_video(engine, cond, uc, plan, seed=1)
            if video.shape[0] != size.video_frames:
                raise RuntimeError(f"our video has {video.shape[0]} frames, expected {size.video_frames}")
            found["finite"] = bool(torch.isfinite(video).all())
            found["total_s"] = meter.now() - start
        else:
            shape = sampling_shape(engine.model_config, plan.num_latent_frames, plan.latent_channels, plan.image_size)
            device = engine.device
            engine.sample(move_conditioning(cond, device), move_conditioning(uc, device), 1, shape,
                          torch.Generator().manual_seed(1))
            found["sampling_peak"] = meter.peak_gib()
    if len(step_ends) != size.sample_steps:
        raise RuntimeError(f"expected {size.sample_steps} denoiser calls, counted {len(step_ends)}")
    found.update(step_s=steady_step(step_ends, start), sampling_s=step_ends[-1] - start)
    found["overall_peak"] = max(found["sampling_peak"], found.get("decode_peak", 0.0), meter.peak_gib())
    return found


def sample_diffusers(config, weights: Path, size: RunSize, meter: Meter, dtype: str, cond: dict, uc: dict,
                     decode: bool = True, first_block_cache: float = 0.0) -> dict:
    """The same measurements for diffusers' pipeline (its transformer stays on the GPU for the decode; without
    `decode` it returns its latents). With `first_block_cache` > 0 the same pipeline then samples once more with
    diffusers' first-block cache at that threshold, without decode: its measurements under "cached", with "skipped"."""
    pipe = diffusers_pipeline(weights / "transformer", weights / "vae" / "3d-vae.pt", config, size.device, DTYPES[dtype])
    found = pipeline_run(pipe, size, meter, dtype, cond, uc, decode)
    if first_block_cache:
        skipped = record_first_block_cache(pipe, first_block_cache)
        found["cached"] = {**pipeline_run(pipe, size, meter, dtype, cond, uc, decode=False), "skipped": skipped}
    return found


def pipeline_run(pipe, size: RunSize, meter: Meter, dtype: str, cond: dict, uc: dict, decode: bool) -> dict:
    step_ends, found = [], {}

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        step_ends.append(meter.now())
        if step == size.sample_steps - 1:
            found["sampling_peak"] = meter.peak_gib()
            meter.reset_peak()
        return callback_kwargs

    height, width = size.video_size
    embeds = {"prompt_embeds": cond["crossattn"], "negative_prompt_embeds": uc["crossattn"]}
    meter.reset_peak()
    with torch.no_grad():
        start = meter.now()
        frames = pipe(**{k: v.to(size.device, DTYPES[dtype]) for k, v in embeds.items()}, height=height, width=width,
                      num_frames=size.video_frames, num_inference_steps=size.sample_steps, **GUIDANCE,
                      generator=torch.Generator().manual_seed(1), output_type="pt" if decode else "latent",
                      callback_on_step_end=on_step_end).frames[0]
        end = meter.now()
    if decode and frames.shape[0] != size.video_frames:
        raise RuntimeError(f"diffusers' video has {frames.shape[0]} frames, expected {size.video_frames}")
    found.update(step_s=steady_step(step_ends, start), sampling_s=step_ends[-1] - start, decode_s=end - step_ends[-1],
                 decode_peak=meter.peak_gib(), total_s=end - start)
    found["overall_peak"] = max(found["sampling_peak"], found["decode_peak"])
    return found


def report_sampling(rows: RowWriter, size: RunSize, meter: Meter, ours: dict, theirs: dict | None, what: str) -> None:
    theirs = theirs or {}
    steps = size.sample_steps
    if steps == 1:
        rows.add(f"{what}: one step (CFG batch 2, warm-up included)", ours["step_s"], "s", theirs.get("step_s"))
    else:
        rows.add(f"{what}: s/step (median of steps 2..{steps} of {steps}, CFG batch 2)", ours["step_s"], "s",
                 theirs.get("step_s"))
        rows.add(f"{what}: {steps} steps", ours["sampling_s"], "s", theirs.get("sampling_s"))
    if "decode_s" in ours:
        rows.add(f"{what}: VAE decode of {size.video_frames} frames", ours["decode_s"], "s", theirs.get("decode_s"),
                 note="our video is finite" if ours["finite"] else "our video has non-finite values (random weights)")
        extrapolated = {side: found["total_s"] + (EXTRAPOLATE_TO - steps) * found["step_s"] for side, found in
                        (("ours", ours), ("theirs", theirs)) if found}
        rows.add(f"{what}: {EXTRAPOLATE_TO}-step video, sampling + decode", extrapolated["ours"], "s",
                 extrapolated.get("theirs"),
                 note=f"extrapolated: the measured {steps}-step run + {EXTRAPOLATE_TO - steps} x s/step")
        rows.add(f"{what}: peak memory while decoding", ours["decode_peak"], meter.memory_unit, theirs.get("decode_peak"),
                 note="ours: transformer and T5 off the GPU; diffusers keeps its transformer on")
    rows.add(f"{what}: peak memory, sampling{' and decode' if 'decode_s' in ours else ''}", ours["overall_peak"], meter.memory_unit,
             theirs.get("overall_peak"), note="T5 off the GPU (encoded first)")


def run_sampling(config, weights: Path, size: RunSize, rows: RowWriter, dtype: str, with_diffusers: bool,
                 decode: bool, what: str, first_block_cache: float = 0.0) -> None:
    """Sample (and decode) on both sides; with `first_block_cache` > 0 each side, warm, samples once more with its
    first-block cache at that threshold (no decode), reported against its own uncached sampling."""
    meter = Meter(size.device)
    engine = build_engine(config, weights, size, dtype)
    cond, uc = encode_and_offload_t5(engine, meter)
    ours = sample_ours(engine, cond, uc, size, meter, decode)
    if first_block_cache:
        engine.first_block_cache = FirstBlockCacheSettings(first_block_cache)
        ours_cached = sample_ours(engine, cond, uc, size, meter, decode=False)
        ours_cached["skipped"] = engine.first_block_cache_record.skipped
    num_layers = len(engine.model.diffusion_model.transformer.layers)
    del engine
    free(meter)
    try:
        theirs = (sample_diffusers(config, weights, size, meter, dtype, cond, uc, decode, first_block_cache)
                  if with_diffusers else None)
    except Exception:
        report_sampling(rows, size, meter, ours, None, f"{what} (diffusers failed, see below)")
        raise
    report_sampling(rows, size, meter, ours, theirs, what)
    if first_block_cache:
        theirs_cached = theirs and theirs["cached"]
        report_first_block_cache(rows, size, (ours, ours_cached), (theirs, theirs_cached), num_layers,
                                 f"{what}, first-block cache {first_block_cache:g}")


def report_first_block_cache(rows: RowWriter, size: RunSize, ours: tuple[dict, dict], theirs: tuple[dict | None, dict | None],
                             num_layers: int, what: str) -> None:
    """(uncached, cached) results per side: the cached sampling time, its ratio to the side's uncached sampling, and
    the share of DiT blocks skipped."""
    def share(found: dict) -> float:
        return FirstBlockCacheRecord(num_layers, found["skipped"]).skipped_block_share

    theirs_plain, theirs_cached = theirs
    rows.add(f"{what}: {size.sample_steps} steps", ours[1]["sampling_s"], "s", theirs_cached and theirs_cached["sampling_s"])
    rows.add(f"{what}: sampling time / uncached sampling time", ours[1]["sampling_s"] / ours[0]["sampling_s"], "x",
             theirs_cached and theirs_cached["sampling_s"] / theirs_plain["sampling_s"], note="each side against itself")
    rows.add(f"{what}: share of DiT blocks skipped", share(ours[1]), "share", theirs_cached and share(theirs_cached),
             note="random weights: says nothing of real weights")
