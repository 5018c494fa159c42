"""Context-parallel VAE (cp_size 2 on two gloo processes) against one process, and its bad inputs."""

import sys

import pytest
import torch

from input_errors import InputError
from sgm.util import instantiate_from_config
from test_vae import vae_config
from vae_cp_worker import run_cp, video_and_latent
from vae_modules.context_parallel import ContextParallelGroups, check_time_split, time_split_sizes

TINY_CONFIG, TINY_I2V_CONFIG = "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/cogvideox_tiny_i2v.yaml"


def perturbed_vae(config: dict):
    torch.manual_seed(0)
    vae = instantiate_from_config(config)
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if "norm" in name:  # GroupNorm affines start at 1 / 0: perturb them
                param.add_(0.2 * torch.randn_like(param))
    return vae


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.slow  # two spawned processes
@pytest.mark.parametrize("config_path", [TINY_CONFIG, TINY_I2V_CONFIG])
def test_split_encode_and_decode_equal_one_process(config_path, tmp_path):
    torch.set_num_threads(1)
    config = vae_config(config_path)
    vae = perturbed_vae(config)
    ranks = run_cp(config, vae, tmp_path)
    video, latent = video_and_latent()
    with torch.no_grad():
        moments = vae.encode_moments(video)  # the encoder gathers its norms (gather_norm: true) as one process
        if vae.decoder.gather_norm:  # 5B-I2V's decoder: statistics over all frames, the one-shot decode
            decoded = vae.decode(latent)
        else:  # released 2B/5B decoder: per-rank statistics, the one-process decode over the same time split
            decoded = vae.decode_chunked(latent, chunk_plan=[(0, 3), (3, 5)])
    for result in ranks:
        assert relative(result["moments"], moments) < 1e-5
        assert relative(result["decoded"], decoded) < 1e-5
        assert torch.equal(result["chunked"], result["decoded"])  # sampling's chunked decode is the split decode


def test_time_split_follows_the_reference():
    assert time_split_sizes(13, 2) == [7, 6] and time_split_sizes(49, 4) == [13, 12, 12, 12]
    check_time_split(49, 2, 4, "a video")
    with pytest.raises(InputError, match="cp_size 2: a video of 45 frames cannot be split over 2 ranks.*nearest valid counts: 41 and 49"):
        check_time_split(45, 2, 4, "a video")
    with pytest.raises(InputError, match="a latent of 11 frames cannot be split over 4 ranks"):
        check_time_split(11, 4, 2, "a latent")  # 2.5 latent frames per rank: one would be upsampled as a first frame


def test_groups_built_by_one_process_name_the_program(monkeypatch):
    """Built outside the entry scripts (which check before the build), the groups give their one message, with the
    program that builds the VAE."""
    monkeypatch.setattr(sys, "argv", ["build_vae.py"])
    with pytest.raises(InputError) as error:
        ContextParallelGroups(2)
    assert str(error.value) == (
        "first_stage_config cp_size 2 does not divide the 1 process of build_vae.py (the VAE's context parallelism "
        "splits each video over a group of 2 processes): run a multiple of 2 processes, e.g. torchrun "
        "--nproc_per_node=2 build_vae.py ...")
