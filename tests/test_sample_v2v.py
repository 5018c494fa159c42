"""Video-to-video (SDEdit, `--video2video --strength S`) against diffusers' CogVideoXVideoToVideoPipeline on pipelines
our exporter writes, what S = 1 equals, data-parallel processes, and the docs' tiny demo line (guidance and sequence
parallel: tests/test_parallel_sampling.py).

2B and 5B: diffusers' pipeline end to end (its video preprocessing, chunked VAE encode, posterior draw and add_noise
noise from the generator, in our order), the released configs' SDE DPM++ sampler on diffusers' full-table schedule
(`rescale_selected_steps: false`) at a step count where diffusers' spacing visits our steps.
CogVideoX1.5: diffusers' V2V pipeline has no padding frame (it refuses an odd latent count and decodes every
frame), ours keeps the 1.5 layout (latent frame 0 a copy of the first, dropped by the decode). The diffusers side is
built from diffusers' own parts in that layout: `retrieve_latents(vae.encode(...))` x scaling_factor, the copy in
front, `scheduler.add_noise` at the first of `get_timesteps`' steps, the pipeline's loop (`latents=`, `strength=`),
frame 0 dropped before `decode_latents`, as its T2V pipeline does.
"""

import shutil
import subprocess
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from diffusers import CogVideoXVideoToVideoPipeline
from diffusers.pipelines.cogvideo.pipeline_cogvideox_video2video import retrieve_latents
from PIL import Image

from interrupt_watch import InterruptWatch
from parallel.layout import ParallelLayout
from parallel.sampling import ParallelSampling
from test_diffusers_pipeline_export import export, sampling_config
from tiny_models import build_engine
from video_sampling import (
    Prompt,
    SamplingPlan,
    SamplingProgress,
    encode_prompt,
    generate_video,
    read_prompts,
    sample_prompts,
    sample_seed,
)
from video_to_video import read_video, sample_from_video

PROMPT = "a yellow sun rolls across a colourful gradient"
VIDEO = "configs/tiny/v2v_video.mp4"  # 128x80, 104 frames at 16 fps
STEPS = 8  # diffusers' trailing spacing visits our DDPM indices at 8 steps
STRENGTHS = (0.5, 0.8)  # the last 4 and int(6.4) = 6 of the 8 steps
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # each encodes, samples and decodes videos with the tiny models (tens of seconds)


def pil_frames(video: torch.Tensor) -> list[Image.Image]:
    """(3, T, H, W) in [-1, 1] holding (v - 127.5) / 127.5 of integers v -> the T frames as PIL images."""
    pixels = (video * 127.5 + 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
    return [Image.fromarray(frame) for frame in pixels]


def embeddings(cond):
    return dict(prompt_embeds=cond["crossattn"], negative_prompt_embeds=torch.zeros_like(cond["crossattn"]),
                guidance_scale=6, use_dynamic_cfg=True, num_inference_steps=STEPS)


@pytest.mark.parametrize("models_fixture, strengths", [("tiny_models", STRENGTHS), ("tiny_5b_models", (0.8,))],
                         ids=["2b", "5b"])
def test_1_0_matches_diffusers_video_to_video_pipeline(tmp_path, models_fixture, strengths, request):
    """2B, and 5B (3D rotary positions, scale_factor 0.7, zero-SNR shift_scale 1.0; the default strength only: the
    strength's step selection is the same code for every family): 5 latent frames (17 video frames: diffusers
    encodes them in two chunks, [0:9] and [9:17], as ours); S 0.5 runs the last 4 of 8 steps, S 0.8 the last
    int(6.4) = 6."""
    models = request.getfixturevalue(models_fixture)
    config = sampling_config(models, models.config_path, STEPS)
    pipe = CogVideoXVideoToVideoPipeline.from_pretrained(export(tmp_path, config, models.transformer))
    engine = build_engine(models, config)
    video = read_video(VIDEO, 17, 8, (64, 96))  # (3, 17, 64, 96)
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(3, Prompt(0, PROMPT), 0)
    for strength in strengths:
        plan = SamplingPlan(5, 16, fps=8, samples_per_prompt=1, seed=3, output_dir="unused", strength=strength)
        ours = generate_video(engine, cond, uc, plan, seed, input_video=video)  # (T, 3, H, W) in [0, 1]
        with torch.no_grad():
            theirs = pipe(video=pil_frames(video), strength=strength, height=64, width=96, output_type="pt",
                          generator=torch.Generator().manual_seed(seed), **embeddings(cond)).frames[0]
        assert ours.shape == theirs.shape == (17, 3, 64, 96)
        assert (ours - theirs).abs().max().item() < 1e-3
        assert ours.std() > 0.01


def test_15_matches_diffusers_parts_with_the_padding_frame(tmp_path, tiny_15_models):
    """6 latent frames: the padding frame + 5 encoded from 17 video frames at 16 fps; 17 frames out."""
    config = sampling_config(tiny_15_models, tiny_15_models.config_path, STEPS)
    pipe = CogVideoXVideoToVideoPipeline.from_pretrained(export(tmp_path, config, tiny_15_models.transformer))
    engine = build_engine(tiny_15_models, config)
    video = read_video(VIDEO, 17, 16, (64, 96))
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(3, Prompt(0, PROMPT), 0)
    for strength in STRENGTHS:
        plan = SamplingPlan(6, 16, fps=16, samples_per_prompt=1, seed=3, output_dir="unused", image_size=(64, 96),
                            strength=strength)
        ours = generate_video(engine, cond, uc, plan, seed, input_video=video)

        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            pixels = pipe.video_processor.preprocess_video(pil_frames(video), height=64, width=96)  # (1, 3, 17, 64, 96)
            z = retrieve_latents(pipe.vae.encode(pixels), generator) * pipe.vae.config.scaling_factor  # (1, 16, 5, 8, 12)
            clean = z.permute(0, 2, 1, 3, 4)  # (1, 5, 16, 8, 12)
            clean = torch.cat([clean[:, :1], clean], dim=1)  # the padding frame: a copy of frame 0 in front
            noise = torch.randn(clean.shape, generator=generator)
            pipe.scheduler.set_timesteps(STEPS)
            timesteps, kept = pipe.get_timesteps(STEPS, pipe.scheduler.timesteps, strength, "cpu")
            assert kept == int(STEPS * strength)
            noised = pipe.scheduler.add_noise(clean, noise, timesteps[:1])
            latents = pipe(latents=noised, strength=strength, height=64, width=96, output_type="latent",
                           generator=generator, **embeddings(cond)).frames  # (1, 6, 16, 8, 12)
            decoded = pipe.decode_latents(latents[:, 1:])  # frame 0 dropped, as diffusers' 1.5 T2V pipeline
            theirs = pipe.video_processor.postprocess_video(decoded, output_type="pt")[0]
        assert ours.shape == theirs.shape == (17, 3, 64, 96)
        assert (ours - theirs).abs().max().item() < 1e-3
        assert ours.std() > 0.01


def test_strength_one_is_text_to_video_from_the_same_noise(tiny_models):
    """S = 1 keeps every step and its first signal scale is exactly 0: the latents are, bit for bit, text-to-video's
    from the noise drawn after the video's posterior sample (so the video has no effect); below 1 it has."""
    engine = build_engine(tiny_models, sampling_config(tiny_models, tiny_models.config_path, 3))  # SDE: 3 draws
    cond, uc = encode_prompt(engine, PROMPT)
    video = read_video(VIDEO, 9, 8, (64, 96))  # (3, 9, 64, 96): 3 latent frames
    edited = sample_from_video(engine, cond, uc, video, 1.0, 3, torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    torch.randn(1, 16, 3, 8, 12, generator=replay)  # the posterior sample's draw
    assert torch.equal(edited, engine.sample(cond, uc, 1, (3, 16, 8, 12), replay))
    lower = sample_from_video(engine, cond, uc, video, 0.5, 3, torch.Generator().manual_seed(7))
    assert (lower - edited).abs().max() > 0.05


def test_data_parallel_ranks_write_the_one_process_videos(tmp_path, tiny_models):
    """3 data-parallel processes (no guidance or sequence split: no communication, so each rank's code runs here in
    turn, as `sample_video.py` runs it) on two equal lines `text@@clip`: rank 0 samples line 0, rank 1 line 1, each
    reading the clip, rank 2 none; the two videos are the ones one process writes (seeded by the line index, so
    they differ), in the one-process folders. One latent frame (a 1-frame video) keeps it short."""
    engine = build_engine(tiny_models)
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text(f"{PROMPT}@@{VIDEO}\n" * 2)

    def sample(world: int, rank: int) -> list[str]:
        parallel = ParallelSampling(ParallelLayout(world, rank))
        plan = SamplingPlan(1, 16, fps=8, samples_per_prompt=1, seed=3, output_dir=str(tmp_path / str(world)),
                            parallel=parallel, strength=0.5)  # 1 frame, 5 of the 10 steps
        prompts = read_prompts(str(prompt_file), parallel.layout.data_rank, parallel.layout.data)
        with InterruptWatch() as interrupts:
            written = sample_prompts(engine, prompts, plan, SamplingProgress(), interrupts)
        return [str(Path(path).relative_to(tmp_path / str(world))) for path in written]

    one = sample(1, 0)
    assert one == [f"{index}_{PROMPT.replace(' ', '_')}/0/000000.mp4" for index in (0, 1)]
    assert [sample(3, rank) for rank in range(3)] == [one[:1], one[1:], []]
    frames = {(world, name): decord.VideoReader(str(tmp_path / world / name))[:].asnumpy() for world in ("1", "3")
              for name in one}
    for name in one:
        assert frames["1", name].shape == (1, 64, 96, 3)
        assert np.array_equal(frames["3", name], frames["1", name]), name
    assert np.abs(frames["1", one[0]].astype(int) - frames["1", one[1]]).max() > 10


def demo_line() -> str:
    """The tiny demo line of docs/video2video.md (the one with --video2video after make_tiny_weights)."""
    lines = (REPO / "docs" / "video2video.md").read_text().splitlines()
    (line,) = [line for line in lines if line.startswith("python tools/make_tiny_weights.py") and "--video2video" in line]
    return line


def test_docs_demo_line_runs_as_written(tmp_path):
    """The docs' line, run as written in a copy of the repository's files (it writes tiny_weights/ and outputs/ in
    the folder it runs in): 49 frames at 8 fps, 64x96, the video restyled."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, tmp_path / name)
    result = subprocess.run(["bash", "-c", demo_line()], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = list((tmp_path / "outputs").rglob("*.mp4"))
    assert path.relative_to(tmp_path) == Path("outputs/0_a_yellow_sun_rolls_across_a_colourful_gradient/0/000000.mp4")
    reader = decord.VideoReader(str(path))
    assert len(reader) == 49 and reader[0].shape == (64, 96, 3) and reader.get_avg_fps() == 8
    assert np.ptp(reader.get_batch([0, 24, 48]).asnumpy()) > 10
