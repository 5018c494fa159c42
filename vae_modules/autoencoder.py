"""The frozen video VAE the configs build: encode videos to latents, decode latents to videos."""

import logging
import os
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from checkpoints.checkpoint_shapes import check_shapes
from input_errors import InputError
from sgm.util import ConfigError, instantiate_from_config
from checkpoints.weight_files import check_torch_file, load_torch_file
from vae_modules.causal_conv import CausalCache
from vae_modules.chunking import check_chunk_plan, encode_chunk_plan, reference_chunk_plan
from vae_modules.context_parallel import ContextParallelGroups, check_time_split, time_split_sizes

logger = logging.getLogger(__name__)


VAE_FILE = "a CogVideoX VAE file (3d-vae.pt: torch.save of {'state_dict': ...})"


def check_vae_file(path: str) -> None:
    """InputError unless `path` (a config's first_stage_config.params.ckpt_path) is a non-empty torch file
    (its size and directory only: cheap enough to run before the model is built)."""
    if not os.path.isfile(path):
        raise InputError(f"VAE checkpoint not found: {path!r} (first_stage_config.params.ckpt_path)")
    check_torch_file(path, VAE_FILE)


def load_vae_state_dict(path: str, ignore_keys: Sequence[str], mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read ``{"state_dict": ...}`` from a ``3d-vae.pt`` file, dropping keys under ``ignore_keys``.

    ``mmap`` maps the file instead of reading it: only the tensors kept are ever read (e.g. the decoder's alone)."""
    check_vae_file(path)
    checkpoint = load_torch_file(path, VAE_FILE, mmap=mmap)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InputError(f"{path!r}: expected a dict with a 'state_dict' entry, found {found}")
    return {
        key: value
        for key, value in checkpoint["state_dict"].items()
        if not any(key.startswith(prefix) for prefix in ignore_keys)
    }


# Latent frames per rank after the first must be even: the first time-upsampling doubles an even count (2t) but maps
# an odd one to 2t - 1 (the first-frame rule) and a single frame to one (reference: vae_modules/cp_enc_dec.py Upsample3D).
LATENT_SPLIT_STEP = 2


class VideoAutoencoderInferenceWrapper(nn.Module):
    """CogVideoX's 3D causal VAE, frozen and in eval mode.

    Videos (b, 3, 4k + 1, H, W) in [-1, 1] map to latents (b, z, k + 1, H / 8, W / 8) and back.
    Parameters are the reference config's keys: sub-modules come from their ``*_config`` nodes;
    ``ckpt_path`` None leaves the random initialisation. Loading drops keys under ``ignore_keys``
    and, unlike the reference's silent non-strict load, refuses a file that lacks any weight.
    ``encoder_config`` None builds the decoder alone (training from precomputed latents): the file is then mapped
    and the encoder's weights are never read.
    """

    def __init__(
        self,
        *,
        cp_size: int,
        ckpt_path: str | None,
        ignore_keys: Sequence[str],
        loss_config: Mapping[str, Any],
        regularizer_config: Mapping[str, Any],
        encoder_config: Mapping[str, Any] | None,
        decoder_config: Mapping[str, Any],
    ) -> None:
        super().__init__()
        if cp_size < 0:
            raise ConfigError(f"first_stage_config: cp_size must be 0 or a positive integer, got {cp_size}")
        # cp_size > 1: the time axis split over groups of cp_size ranks (vae_modules/context_parallel.py)
        self.context_parallel = ContextParallelGroups(cp_size) if cp_size > 1 else None
        self.encoder = None if encoder_config is None else instantiate_from_config(encoder_config)
        self.decoder = instantiate_from_config(decoder_config)
        self.loss = instantiate_from_config(loss_config)
        self.regularization = instantiate_from_config(regularizer_config)
        if ckpt_path is not None:
            self.load_checkpoint(ckpt_path, ignore_keys)
        self.requires_grad_(False)
        self.eval()

    def load_checkpoint(self, path: str, ignore_keys: Sequence[str] = ("loss",)) -> None:
        """Load a released-format ``3d-vae.pt``; InputError if any encoder/decoder weight is missing or misshapen."""
        decoder_only = self.encoder is None
        ignore_keys = (*ignore_keys, "encoder.") if decoder_only else ignore_keys
        state_dict = load_vae_state_dict(path, ignore_keys, mmap=decoder_only)
        check_shapes(path, state_dict, self.state_dict())
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        if missing:
            raise InputError(f"{path!r} lacks {len(missing)} VAE weight(s), e.g. {missing[:5]}")
        if unexpected:
            logger.warning("%s: ignoring %d unexpected key(s), e.g. %s", path, len(unexpected), unexpected[:5])

    def train(self, mode: bool = True) -> "VideoAutoencoderInferenceWrapper":
        """The VAE is frozen: it stays in eval mode whatever the enclosing model does."""
        return super().train(False)

    @property
    def time_compression(self) -> int:
        return self.encoder.time_compression

    @property
    def space_compression(self) -> int:
        return self.encoder.space_compression

    def _check_video(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.encoder.in_channels:
            raise ValueError(
                f"expected a video (b, {self.encoder.in_channels}, t, h, w), got shape {tuple(x.shape)}"
            )
        frames, height, width = x.shape[2:]
        step = self.time_compression
        if (frames - 1) % step != 0:
            below = (frames - 1) // step * step + 1
            raise ValueError(
                f"the VAE encodes {step}k + 1 frames, got {frames}; nearest valid counts: {below} and {below + step}"
            )
        if height % self.space_compression or width % self.space_compression:
            raise ValueError(
                f"video height and width must be multiples of {self.space_compression}, got {height}x{width}"
            )

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.ndim != 5 or z.shape[1] != self.decoder.z_channels or z.shape[2] < 1:
            raise ValueError(
                f"expected a latent (b, {self.decoder.z_channels}, T >= 1, h, w), got shape {tuple(z.shape)}"
            )

    @torch.no_grad()
    def encode(self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """(b, 3, 4k + 1, H, W) in [-1, 1] -> (b, z, k + 1, H / 8, W / 8).

        ``sample`` draws ``mean + std * randn_like(mean)`` from torch's global RNG, as the reference
        does in training (the first draw of a training step), or from ``generator`` when given;
        ``sample=False`` gives the mean.
        """
        z, _ = self.regularization(self.encode_moments(x), sample=sample, generator=generator)
        return z

    @torch.no_grad()
    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, 4k + 1, H, W) in [-1, 1] -> the posterior's moments (b, 2 z, k + 1, H / 8, W / 8): mean, then
        log-variance, along channels (what a latent cache stores)."""
        self._check_video(x)
        if self.context_parallel is None:
            return self.encoder(x)
        cp = self.context_parallel
        check_time_split(x.shape[2], cp.cp_size, self.time_compression, "a video")
        local, _ = cp.split(x)  # (b, 3, 4 k_r (+ 1 on rank 0), H, W)
        moments = self.encoder(local, cp.context(self.encoder.gather_norm))
        latent_frames = (x.shape[2] - 1) // self.time_compression + 1
        return cp.gather(moments, time_split_sizes(latent_frames, cp.cp_size))  # (b, 2 z, k + 1, h, w)

    @torch.no_grad()
    def encode_chunked(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(b, 3, 4k + 1, H, W) in [-1, 1] -> a posterior sample (b, z, k + 1, H / 8, W / 8), encoded in diffusers'
        frame chunks (`encode_chunk_plan`: 8 frames, the remainder in the first), as diffusers' VAE encodes a
        video: each causal conv's trailing frames pass to the next chunk through a `CausalCache`, GroupNorm
        statistics are per chunk (so this differs from `encode` beyond one chunk), memory is one chunk's. The
        sample is one draw of the whole latent's shape from `generator`, after the encode (diffusers' order).

        With context parallelism configured the whole video is still encoded here, by this process alone."""
        self._check_video(x)
        cache = CausalCache()
        moments = torch.cat([self.encoder(x[:, :, start:end], cache) for start, end in encode_chunk_plan(x.shape[2])],
                            dim=2)  # (b, 2 z, k + 1, h, w)
        z, _ = self.regularization(moments, sample=True, generator=generator)
        return z

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """One shot (the reference's ``decode_first_stage``): (b, z, T, h, w) -> (b, 3, 4 (T - 1) + 1, 8 h, 8 w).

        GroupNorm statistics span all frames, so this differs from ``decode_chunked``.
        """
        self._check_latent(z)
        if self.context_parallel is None:
            return self.decoder(z)
        return self._decode_split(z)

    def _decode_split(self, z: torch.Tensor) -> torch.Tensor:
        """Context parallel: each rank of the group decodes its time slice (left context from the previous rank),
        the video is all-gathered: (b, z, T, h, w) -> (b, 3, 4 (T - 1) + 1, 8 h, 8 w) on every rank."""
        cp = self.context_parallel
        check_time_split(z.shape[2], cp.cp_size, LATENT_SPLIT_STEP, "a latent")
        local, _ = cp.split(z)
        video = self.decoder(local, cp.context(self.decoder.gather_norm))
        return cp.gather(video, time_split_sizes(self.decoder.output_frames(z.shape[2]), cp.cp_size))

    @torch.no_grad()
    def decode_chunked(
        self,
        z: torch.Tensor,
        chunk_plan: Sequence[tuple[int, int]] | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Decode latent-frame chunks in turn, as the reference's sampling does (its `sample_video.py` decode loop).

        ``chunk_plan`` defaults to ``reference_chunk_plan(T)`` ([0:3], [3:5], ...; odd T only).
        Each causal conv's trailing input frames pass to the next chunk through a ``CausalCache``
        that lives only for this call. (b, z, T, h, w) -> (b, 3, frames, 8 h, 8 w).
        """
        self._check_latent(z)
        if self.context_parallel is not None:  # the reference's context-parallel decode: one slice per rank
            return self._decode_split(z)
        num_latent = z.shape[2]
        plan = reference_chunk_plan(num_latent) if chunk_plan is None else [tuple(c) for c in chunk_plan]
        check_chunk_plan(plan, num_latent)
        total = sum(self.decoder.output_frames(end - start) for start, end in plan)
        cache = CausalCache()
        video = None
        position = 0
        for start, end in tqdm(plan, desc="VAE decode", disable=not progress):
            part = self.decoder(z[:, :, start:end], cache)  # (b, 3, f, H, W)
            if video is None:
                video = part.new_empty(part.shape[:2] + (total,) + part.shape[3:])
            video[:, :, position : position + part.shape[2]] = part
            position += part.shape[2]
        return video
