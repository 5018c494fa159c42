"""Text-to-video (and image-to-video) sampling with a built engine: prompts in, mp4 files out.

What `sample_video.py` runs, kept out of the entry script so it can be tested:
prompt reading (one per line, spread over data-parallel ranks), per-prompt seeding, the guided sampling call,
the chunked VAE decode, and writing `<output_dir>/<index>_<prompt slug>/<n>/000000.mp4` (an existing video, an
earlier run's, is kept: the new one is then `000000-2.mp4`, `-3`, ...; each written path is printed). With
`image2video`, prompt lines are `text@@image_path` and the image conditions the video (see `image_to_video/conditioning.py`);
with `video2video`, they are `text@@video_path` and the sampling starts from the noised video (see
`video_to_video.py`).
"""

import hashlib
import io
import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator

import imageio
import numpy as np
import torch

from input_errors import InputError
from interrupt_watch import InterruptWatch
from diffusion_video import SATVideoDiffusionEngine
from model_family import sampling_shape
from image_to_video.batch_keys import CONCAT_COND_KEY
from image_to_video.conditioning import (
    conditioning_image_size,
    image_condition_pixels,
    image_latent,
    split_image_prompt,
)
from model_family import sampling_pixel_size
from parallel.sampling import ParallelSampling
from video_to_video import read_video, sample_from_video, split_video_prompt, video_frame_count


@dataclass(frozen=True)
class Prompt:
    index: int  # line number among non-empty lines of the file; names the output folder
    text: str


def read_prompts(path: str, rank: int = 0, world_size: int = 1) -> list[Prompt]:
    """Non-empty lines of `path`; rank r takes prompts r, r + W, r + 2W, ... (as the reference)."""
    if not os.path.isfile(path):
        raise InputError(f"prompt file {path!r} does not exist (expected a text file with one prompt per line)")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"prompt file {path!r} is not UTF-8 text: byte {data[err.start]:#04x} at offset {err.start} "
                         f"(line {line}) cannot be decoded; save the file as UTF-8") from None
    texts = [line.strip() for line in io.StringIO(text, newline=None) if line.strip()]  # lines as open() splits them
    if not texts:
        raise InputError(f"prompt file {path!r} holds no prompts (expected one prompt per line)")
    return [Prompt(index, text) for index, text in enumerate(texts) if index % world_size == rank]


def cli_prompts(check: Callable[[list[str]], None] = lambda lines: None) -> Iterator[Prompt]:
    """Prompts typed at the terminal until EOF or an empty line. A line `check` refuses (InputError) is reported as
    one `error:` line and asked for again."""
    index = 0
    while True:
        try:
            text = input("Please input English text (Ctrl-D or empty line to quit): ").strip()
        except EOFError:
            return
        if not text:
            return
        try:
            check([text])
        except InputError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        yield Prompt(index, text)
        index += 1


PROMPT_SLUG_BYTES = 120


def prompt_folder(output_dir: str, prompt: Prompt, sample_index: int) -> str:
    """`<index>_<prompt with spaces as underscores, slashes dropped, cut to 120 bytes>/<n>`.

    Matches the reference for ASCII prompts; the reference cuts at 120 characters, which for a CJK prompt is
    360 UTF-8 bytes, over the usual 255-byte limit on a file name: we cut at 120 bytes, on a character boundary."""
    slug = prompt.text.replace(" ", "_").replace("/", "")
    slug = slug.encode("utf-8")[:PROMPT_SLUG_BYTES].decode("utf-8", errors="ignore")
    return os.path.join(output_dir, f"{prompt.index}_{slug}", str(sample_index))


def sample_seed(seed: int, prompt: Prompt, sample_index: int) -> int:
    """A 63-bit seed per (run seed, prompt, sample): the same seed gives the same video whatever the rank count.

    Beyond the reference, where building the model reseeds the global RNG so `--seed` has no effect.
    """
    digest = hashlib.sha256(f"{seed}|{prompt.index}|{prompt.text}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def save_video_mp4(video: torch.Tensor, path: str, fps: int) -> None:
    """video: (T, 3, H, W) in [0, 1] -> H.264 mp4 at `fps`."""
    frames = (255.0 * video.permute(0, 2, 3, 1)).to(torch.uint8).cpu().numpy()  # (T, H, W, 3)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with imageio.get_writer(path, fps=fps) as writer:
        for frame in frames:
            writer.append_data(np.ascontiguousarray(frame))


def save_new_video(video: torch.Tensor, path: str, fps: int) -> str:
    """`save_video_mp4` that never replaces a file: where `path` exists (an earlier run's video), the video gets the
    first free `<name>-2.mp4`, `<name>-3.mp4`, ... beside it. Returns the path written.

    The video is written under a temporary name, a free name is claimed by an exclusive create (of runs racing for
    one name exactly one gets it), and the video is renamed onto its own claim."""
    folder, name = os.path.split(path)
    stem, extension = os.path.splitext(name)
    temp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{extension}")  # imageio picks the format by extension
    save_video_mp4(video, temp, fps)
    for number in itertools.count(1):
        candidate = path if number == 1 else os.path.join(folder, f"{stem}-{number}{extension}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        os.replace(temp, candidate)
        return candidate


@dataclass(frozen=True)
class SamplingPlan:
    num_latent_frames: int
    latent_channels: int
    fps: int
    samples_per_prompt: int
    seed: int
    output_dir: str
    image2video: bool = False  # prompt lines are `text@@image_path` (CogVideoX-5B-I2V, CogVideoX1.5-5B-I2V)
    image_size: tuple[int, int] | None = None  # text-to-video (H, W) in pixels; None: the model's (1.0)
    image_short_side: int | None = None  # CogVideoX1.5 I2V: the image's short side in pixels; None: 768
    parallel: ParallelSampling | None = None  # several processes per video (parallel/); None: one process each
    # Video-to-video (SDEdit, text-to-video models): prompt lines are `text@@video_path` and this share of the
    # sampler's steps runs from the noised video; None: not video-to-video.
    strength: float | None = None

    @property
    def video2video(self) -> bool:
        return self.strength is not None


@dataclass
class SamplingProgress:
    """What a sampling run is doing and what it wrote, for the line an interrupted run (Ctrl-C) ends with."""

    doing: str = "starting"
    written: list[str] = field(default_factory=list)

    def summary(self) -> str:
        wrote = f"wrote {len(self.written)} video(s), the last {self.written[-1]}" if self.written else "no video written"
        return f"interrupted while {self.doing}; {wrote}"


def encode_prompt(engine: SATVideoDiffusionEngine, text: str) -> tuple[dict, dict]:
    """Conditional and unconditional embeddings; the unconditional text embedding is all zeros (as the 2B sampler)."""
    batch, batch_uc = {"txt": [text]}, {"txt": [""]}
    with torch.no_grad():
        return engine.conditioner.get_unconditional_conditioning(batch, batch_uc=batch_uc, force_uc_zero_embeddings=["txt"])


def move_conditioning(cond: dict, device: torch.device) -> dict:
    return {key: value.to(device) for key, value in cond.items()}


def generate_video(
    engine: SATVideoDiffusionEngine, cond: dict, uc: dict, plan: SamplingPlan, seed: int, image: torch.Tensor | None = None,
    input_video: torch.Tensor | None = None,
) -> torch.Tensor:
    """One video (T, 3, H, W) in [0, 1] for one prompt's embeddings (and, for image-to-video, its preprocessed
    image (3, H, W) in [-1, 1], whose size is the video's; for video-to-video, its preprocessed video (3, T, H, W)
    in [-1, 1] at the plan's size).

    The same for every family: CogVideoX1.5's padding frame (dropped by the decode) and ofs value (the reference's
    tensor([2.0]) for I2V, no draw) come from the engine."""
    device = engine.device
    size = plan.image_size if image is None else tuple(image.shape[-2:])
    shape = sampling_shape(engine.model_config, plan.num_latent_frames, plan.latent_channels, size)
    generator = torch.Generator().manual_seed(seed)
    if image is not None:  # matches the reference: the image's posterior draw comes before the initial noise
        latent = image_latent(engine, image, plan.num_latent_frames, generator)  # (1, t, c, h, w)
        cond, uc = {**cond, CONCAT_COND_KEY: latent}, {**uc, CONCAT_COND_KEY: latent}  # the same image for both CFG branches
    cond, uc = engine.with_ofs(cond, 1), engine.with_ofs(uc, 1)
    denoiser = plan.parallel.denoiser(engine) if plan.parallel is not None else None
    cond, uc = move_conditioning(cond, device), move_conditioning(uc, device)
    if input_video is None:
        latents = engine.sample(cond, uc, 1, shape, generator, denoiser)  # (1, t, c, h, w)
    else:
        latents = sample_from_video(engine, cond, uc, input_video, plan.strength, plan.num_latent_frames, generator,
                                    denoiser)
    latents = latents.permute(0, 2, 1, 3, 4).contiguous()  # (1, c, t, h, w)
    with offloaded(engine.model, device):
        video = engine.decode_first_stage_chunked(latents, progress=True)  # (1, 3, T, H, W)
    video = video[0].permute(1, 0, 2, 3).to(torch.float32)  # (T, 3, H, W)
    return torch.clamp((video + 1.0) / 2.0, 0.0, 1.0)


def read_input_video(engine: SATVideoDiffusionEngine, plan: SamplingPlan, path: str) -> torch.Tensor:
    """A video-to-video prompt's video as the plan samples from it: (3, T, H, W) in [-1, 1], the T frames of the
    sampled video at the plan's fps, at its size (every process of the video reads it)."""
    size = plan.image_size or sampling_pixel_size(engine.model_config)
    return read_video(path, video_frame_count(engine.model_config, plan.num_latent_frames), plan.fps, size)


class offloaded:
    """Moves a module to the CPU for the duration of a block when it sits on a CUDA device (frees memory for the
    VAE decode); a no-op on the CPU."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.module, self.device = module, torch.device(device)

    def __enter__(self):
        if self.device.type == "cuda":
            self.module.to("cpu")
            torch.cuda.empty_cache()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.module.to(self.device)


def sample_prompts(
    engine: SATVideoDiffusionEngine, prompts: list[Prompt] | Iterator[Prompt], plan: SamplingPlan,
    progress: SamplingProgress, interrupts: InterruptWatch,
) -> list[str]:
    """Sample `plan.samples_per_prompt` videos for each prompt; returns the written mp4 paths (also kept in
    `progress`, with what the run is doing, for an interrupted run's last line). A Ctrl-C Python lost is raised
    again after an input video is read and before each video is sampled (`interrupts.check`).

    A list of prompts (a prompt file) is encoded first, after which the T5 leaves the GPU (beyond the reference,
    which keeps it resident); prompts typed at the terminal are encoded one by one.
    """
    def prepared(prompt: Prompt) -> tuple[Prompt, dict, dict, torch.Tensor | None, str | None]:
        progress.doing = f"encoding prompt {prompt.index} ({prompt.text!r})"
        image, video_path = None, None
        if plan.image2video:  # the text alone names the output folder, as the reference
            text, image_path = split_image_prompt(prompt.text)
            size = conditioning_image_size(engine.model_config, image_path, plan.image_short_side)
            prompt, image = Prompt(prompt.index, text), image_condition_pixels(image_path, size, engine.model_config)
        if plan.video2video:  # the video is read when its prompt is sampled (videos are large)
            text, video_path = split_video_prompt(prompt.text)
            prompt = Prompt(prompt.index, text)
        return (prompt, *encode_prompt(engine, prompt.text), image, video_path)

    if isinstance(prompts, list):
        encoded = [prepared(prompt) for prompt in prompts]
        if engine.device.type == "cuda":
            engine.conditioner.to("cpu")
            torch.cuda.empty_cache()
    else:
        encoded = (prepared(prompt) for prompt in prompts)
    between = "after the last video" if isinstance(prompts, list) else "reading a prompt from the terminal"
    progress.doing = between
    for prompt, cond, uc, image, video_path in encoded:
        input_video = None
        if video_path is not None:
            progress.doing = f"reading the video {video_path!r} of prompt {prompt.index}"
            input_video = read_input_video(engine, plan, video_path)
            interrupts.check()
        for sample_index in range(plan.samples_per_prompt):
            interrupts.check()
            path = os.path.join(prompt_folder(plan.output_dir, prompt, sample_index), "000000.mp4")
            progress.doing = (f"sampling prompt {prompt.index} ({prompt.text!r}), video {sample_index + 1} of "
                              f"{plan.samples_per_prompt} for {path}")
            video = generate_video(engine, cond, uc, plan, sample_seed(plan.seed, prompt, sample_index), image,
                                   input_video)
            if plan.parallel is not None and not plan.parallel.layout.writes_output:
                continue  # another rank of this video's group holds the same video and writes it
            written = save_new_video(video, path, plan.fps)
            progress.written.append(written)
            kept = f" ({path} is an earlier run's video, kept)" if written != path else ""
            print(f"wrote {written}{kept}", flush=True)
        progress.doing = between
    return progress.written
