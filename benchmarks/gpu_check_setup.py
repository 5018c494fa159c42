"""What `gpu_check.py` measures on: the sizes of a run (full size on a GPU, tiny in the CPU smoke run), model
configs derived from the released YAMLs, random weights in the real formats made on the device, a synthetic
training video, and the meter (seconds and peak memory) every part reports with.
"""

import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dit_video_concat import DTYPES
from checkpoints.sat_checkpoint import save_sat_checkpoint
from model_family import latent_frame_count
from tiny.weights import build_network, build_vae, randomize_parameters, randomize_parameters_of_frozen
from tiny.t5 import make_tiny_t5

REPO = Path(__file__).resolve().parents[1]
MODEL_YAMLS = {("2b", False): "configs/cogvideox_2b.yaml", ("2b", True): "configs/cogvideox_2b_lora.yaml",
               ("5b", False): "configs/cogvideox_5b.yaml", ("5b", True): "configs/cogvideox_5b_lora.yaml",
               ("1.5", False): "configs/cogvideox1.5_5b.yaml", ("1.5", True): "configs/cogvideox1.5_5b_lora.yaml"}
SFT_YAML = "configs/sft.yaml"
PROMPT = "a red fox trots across a snowy meadow at dawn"
# The smoke run's network and VAE sizes (the tiny config's, with one 64-wide head so the 5B rotary table fits).
SMOKE_NETWORK = {"time_embed_dim": 32, "latent_height": 4, "latent_width": 6, "num_layers": 2, "hidden_size": 64,
                 "num_attention_heads": 1}
SMOKE_TEXT_WIDTH = 32
SMOKE_LORA_RANK = 4


@dataclass(frozen=True)
class RunSize:
    """Sizes and precisions of one gpu_check run."""
    smoke: bool
    video_frames: int  # 4k + 1
    video_size: tuple[int, int]  # (height, width)
    clip_size: tuple[int, int]  # (height, width) of the synthetic training clip (the dataset resizes it)
    sample_steps: int  # sampling steps actually run (per-step time is extrapolated to 50)
    train_steps: int  # training steps per run, the first one not timed
    dtype_2b: str  # "fp16" on a GPU (the released 2B setup)
    dtype_5b: str  # "bf16" (the released 5B setup)

    @property
    def latent_frames(self) -> int:
        return latent_frame_count(self.video_frames)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.smoke else "cuda")


def run_size(smoke: bool, sample_steps: int, train_steps: int) -> RunSize:
    if smoke:  # fp16 needs CUDA (DeepSpeed refuses it on a CPU), and the VAE encode's avg_pool3d has no bf16 CPU kernel
        return RunSize(True, 9, (32, 48), (64, 96), sample_steps, train_steps, dtype_2b="fp32", dtype_5b="fp32")
    return RunSize(False, 49, (480, 720), (480, 720), sample_steps, train_steps, dtype_2b="fp16", dtype_5b="bf16")


def size_1_5(size: RunSize) -> RunSize:
    """CogVideoX1.5's run: 81 frames at 768x1360 (21 latent frames + the padding frame: 22 x 96 x 170 latents, 45,104
    tokens with the text); the smoke run keeps its tiny size (9 frames: 3 + 1 latent frames)."""
    if size.smoke:
        return size
    return replace(size, video_frames=81, video_size=(768, 1360), clip_size=(768, 1360))


def model_config(model: str, lora: bool, size: RunSize, weights: Path):
    """The released `model:` section of `model` ("2b" | "5b" | "1.5"), or of its LoRA config, shrunk in a smoke run, pointed
    at `weights`, sampling `size.sample_steps` steps."""
    config = OmegaConf.load(REPO / MODEL_YAMLS[model, lora]).model
    params = config.network_config.params
    params.transformer_args.skip_init = True  # random init skipped: the weights are loaded over it
    if size.smoke:
        params.update(SMOKE_NETWORK)
        params.modules.patch_embed_config.params.text_hidden_size = SMOKE_TEXT_WIDTH
        if lora:
            params.modules.lora_config.params.r = SMOKE_LORA_RANK
        for part in ("encoder_config", "decoder_config"):
            config.first_stage_config.params[part].params.update({"ch": 32, "num_res_blocks": 1})
    config.first_stage_config.params.ckpt_path = str(weights / "vae" / "3d-vae.pt")
    config.conditioner_config.params.emb_models[0].params.model_dir = str(weights / "t5")
    sampler = config.sampler_config.params
    sampler.num_steps = sampler.guider_config.params.num_steps = size.sample_steps
    sampler.verbose = False
    return config


def text_width(config) -> int:
    return int(config.network_config.params.modules.patch_embed_config.params.text_hidden_size)


def ensure_weights(config, weights: Path, size: RunSize, dtype: str, seed: int = 0) -> Path:
    """Random weights for `config` in the released formats under `weights/` (made once, reused by later parts):
    transformer/ (SAT checkpoint, in `dtype`), vae/3d-vae.pt, t5/ (a two-layer stand-in of the config's text
    width; the T5-XXL itself is timed separately, see gpu_check_sample). Drawn on the run's device."""
    done = weights / "complete"
    if done.is_file():
        return weights
    device = size.device
    generator = torch.Generator(device).manual_seed(seed)
    network = build_network(config).to(device)
    randomize_parameters(network, generator)
    cast = DTYPES[dtype]
    state = {f"model.{key}": (value.to(cast) if value.is_floating_point() else value)
             for key, value in network.state_dict().items()}
    save_sat_checkpoint(state, weights / "transformer", iteration=1)
    del network, state
    vae = build_vae(config).to(device)
    randomize_parameters_of_frozen(vae, generator)
    (weights / "vae").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {key: value.cpu() for key, value in vae.state_dict().items()}}, weights / "vae" / "3d-vae.pt")
    del vae
    make_tiny_t5(weights / "t5", seed=seed, d_model=text_width(config))
    done.write_text("")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return weights


def write_training_video(folder: Path, size: RunSize, caption: str = PROMPT) -> Path:
    """One synthetic clip of moving colour waves (8 fps, a few frames more than one sample takes) and its caption,
    in the SFT layout videos/<name>.mp4 + labels/<name>.txt."""
    import imageio
    import numpy as np

    if (folder / "labels" / "wave.txt").is_file():
        return folder
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    height, width = size.clip_size
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    with imageio.get_writer(folder / "videos" / "wave.mp4", fps=8) as writer:
        for t in range(size.video_frames + 8):
            frame = np.stack([128 + 100 * np.sin((x + 3 * t) / 8), 128 + 100 * np.cos((y - 2 * t) / 6),
                              128 + 60 * np.sin((x + y + t) / 10)], axis=-1)
            writer.append_data(frame.clip(0, 255).astype(np.uint8))
    (folder / "labels" / "wave.txt").write_text(caption + "\n")
    return folder


class Meter:
    """Wall seconds (synchronised on CUDA) and peak memory: on CUDA `torch.cuda.max_memory_allocated` since the
    last `reset_peak`; on the CPU the process's peak RSS (it cannot be reset: a smoke-run figure only)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.memory_unit = "GiB (max_memory_allocated)" if self.cuda else "GiB (process peak RSS, CPU)"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def allocated_gib(self) -> float:
        """CUDA memory held by live tensors now (CUDA only)."""
        return torch.cuda.memory_allocated() / 2**30

    @contextmanager
    def timed(self, into: dict, key: str):
        """Adds the block's wall seconds to `into[key]`."""
        start = self.now()
        try:
            yield
        finally:
            into[key] = into.get(key, 0.0) + self.now() - start
