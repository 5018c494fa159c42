"""3D causal VAE: key schema of the release, numerics against diffusers, chunked decode, errors.

diffusers' ``AutoencoderKLCogVideoX`` is the independent oracle: tiny fp32 random weights (norm
affines perturbed so nothing hides) are converted with ``tools.convert_vae`` and both models run
on the same inputs.
"""

import copy
import os

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from omegaconf import OmegaConf

from input_errors import InputError
from sgm.util import instantiate_from_config
from interop.vae_keys import diffusers_config, diffusers_to_sat, load_diffusers_as_sat, sat_to_diffusers, save_diffusers
from tools.convert_vae import main as convert_main
from vae_modules.autoencoder import VideoAutoencoderInferenceWrapper
from model_family import latent_frame_count
from vae_modules.chunking import check_chunk_plan, reference_chunk_plan
from vae_modules.regularizers import DiagonalGaussianDistribution

TINY_CONFIG = "configs/tiny/cogvideox_tiny.yaml"
FULL_CONFIG = "configs/cogvideox_2b.yaml"
RELEASED_KEYS = "tests/data/cogvideox-2b-vae.keys.tsv"


def vae_config(path: str, ckpt_path: str | None = None) -> dict:
    config = OmegaConf.to_container(OmegaConf.load(path).model.first_stage_config)
    config["params"]["ckpt_path"] = ckpt_path
    return config


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-4 relative to the expected tensor's scale."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.fixture(scope="module")
def tiny_vae() -> VideoAutoencoderInferenceWrapper:
    torch.manual_seed(0)
    vae = instantiate_from_config(vae_config(TINY_CONFIG))
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if "norm" in name:  # GroupNorm affines start at 1 / 0: perturb them
                param.add_(0.2 * torch.randn_like(param))
    return vae


@pytest.fixture(scope="module")
def oracle(tiny_vae) -> AutoencoderKLCogVideoX:
    state_dict = tiny_vae.state_dict()
    model = AutoencoderKLCogVideoX(**diffusers_config(state_dict))
    model.load_state_dict(sat_to_diffusers(state_dict), strict=True)
    return model.eval()


def latent(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 16, frames, 3, 4, generator=generator)  # (b, z, T, h, w), non-square


# ---------------------------------------------------------------- schema and construction


def test_full_size_state_dict_matches_released_keys():
    with torch.device("meta"):
        vae = instantiate_from_config(vae_config(FULL_CONFIG))
    ours = {name: list(t.shape) for name, t in vae.state_dict().items()}
    released = {}
    with open(RELEASED_KEYS) as handle:
        for line in handle:
            name, shape = line.rstrip("\n").split("\t")
            if not name.startswith("loss"):
                released[name] = [int(s) for s in shape.strip("[]").split(",") if s.strip()]
    assert ours == released


def test_frozen_and_eval(tiny_vae):
    assert not any(p.requires_grad for p in tiny_vae.parameters())
    tiny_vae.train()
    assert not tiny_vae.training and not tiny_vae.decoder.training


def test_cp_size_above_one_needs_that_many_processes():
    config = vae_config(TINY_CONFIG)
    config["params"]["cp_size"] = 2
    with pytest.raises(InputError, match="first_stage_config cp_size 2 does not divide the 1 process of "):
        instantiate_from_config(config)


def test_attention_resolutions_are_refused():
    config = vae_config(TINY_CONFIG)
    config["params"]["decoder_config"]["params"]["attn_resolutions"] = [16]
    with pytest.raises(ValueError, match="attn_resolutions"):
        instantiate_from_config(config)


def test_checkpoint_load_round_trip(tiny_vae, tmp_path):
    state_dict = dict(tiny_vae.state_dict())
    path = tmp_path / "3d-vae.pt"
    torch.save({"state_dict": {**state_dict, "loss.logvar": torch.zeros(())}}, path)
    loaded = instantiate_from_config(vae_config(TINY_CONFIG, str(path)))
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state_dict[name]), name


def test_checkpoint_errors(tiny_vae, tmp_path):
    with pytest.raises(InputError, match="nowhere.pt"):
        instantiate_from_config(vae_config(TINY_CONFIG, str(tmp_path / "nowhere.pt")))
    partial = tmp_path / "partial.pt"
    state_dict = dict(tiny_vae.state_dict())
    del state_dict["decoder.conv_out.conv.bias"]
    torch.save({"state_dict": state_dict}, partial)
    with pytest.raises(InputError, match="decoder.conv_out.conv.bias"):
        instantiate_from_config(vae_config(TINY_CONFIG, str(partial)))
    bare = tmp_path / "bare.pt"
    torch.save(state_dict, bare)
    with pytest.raises(InputError, match="state_dict"):
        instantiate_from_config(vae_config(TINY_CONFIG, str(bare)))


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 8, 16, 16), "got 8; nearest valid counts: 5 and 9"),
        ((1, 3, 9, 12, 16), "multiples of 8, got 12x16"),
        ((1, 4, 9, 16, 16), r"expected a video \(b, 3"),
        ((3, 9, 16, 16), r"expected a video"),
    ],
)
def test_encode_rejects_bad_videos(tiny_vae, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae.encode(torch.zeros(shape))


def test_decode_rejects_bad_latents(tiny_vae):
    with pytest.raises(ValueError, match=r"expected a latent \(b, 16"):
        tiny_vae.decode(torch.zeros(1, 8, 3, 2, 2))
    with pytest.raises(ValueError, match="odd latent frame count, got 4"):
        tiny_vae.decode_chunked(latent(1, 4))


def test_reference_chunk_plan():
    assert reference_chunk_plan(13) == [(0, 3), (3, 5), (5, 7), (7, 9), (9, 11), (11, 13)]
    assert reference_chunk_plan(3) == [(0, 3)]
    assert reference_chunk_plan(1) == [(0, 1)]
    with pytest.raises(ValueError, match="use 11 or 13 latent frames"):
        reference_chunk_plan(12)
    with pytest.raises(ValueError, match="consecutive"):
        check_chunk_plan([(0, 3), (4, 5)], 5)
    with pytest.raises(ValueError, match="covers 3 latent frames"):
        check_chunk_plan([(0, 3)], 5)
    assert latent_frame_count(49) == 13


# ---------------------------------------------------------------- numerics against diffusers


@pytest.mark.parametrize("frames", [1, 7])
def test_chunked_decode_matches_diffusers_default(tiny_vae, oracle, frames):
    z = latent(2, frames)  # plan [0:3], [3:5], [5:7]; diffusers' default batches 2 frames the same way
    ours = tiny_vae.decode_chunked(z)
    with torch.no_grad():
        expected = oracle.decode(z).sample
    assert ours.shape == (2, 3, 4 * (frames - 1) + 1, 24, 32)
    assert_close(ours, expected)


def test_one_shot_decode_matches_diffusers(tiny_vae, oracle):
    z = latent(1, 5, seed=2)
    oracle_one_shot = copy.copy(oracle)
    oracle_one_shot.num_latent_frames_batch_size = z.shape[2]
    with torch.no_grad():
        expected = oracle_one_shot.decode(z).sample
    assert_close(tiny_vae.decode(z), expected)


def test_one_shot_and_chunked_decode_differ(tiny_vae):
    z = latent(1, 5, seed=3)
    difference = (tiny_vae.decode(z) - tiny_vae.decode_chunked(z)).abs().max().item()
    assert difference > 1e-3  # GroupNorm statistics are per chunk (README item 14)


def test_chunked_decode_leaves_no_state(tiny_vae):
    z = latent(1, 5, seed=4)
    first = tiny_vae.decode_chunked(z)
    tiny_vae.decode_chunked(latent(1, 7, seed=5))
    assert torch.equal(first, tiny_vae.decode_chunked(z))


def test_chunked_decode_single_chunk_plan_equals_one_shot(tiny_vae):
    z = latent(1, 5, seed=6)
    assert torch.equal(tiny_vae.decode_chunked(z, chunk_plan=[(0, 5)]), tiny_vae.decode(z))


def test_encode_mean_matches_diffusers(tiny_vae, oracle):
    generator = torch.Generator().manual_seed(7)
    video = torch.rand(2, 3, 17, 24, 32, generator=generator) * 2 - 1  # (b, c, t, h, w)
    oracle_all_frames = copy.copy(oracle)
    oracle_all_frames.num_sample_frames_batch_size = video.shape[2]  # the reference normalises over all frames
    with torch.no_grad():
        expected = oracle_all_frames.encode(video).latent_dist.mode()
    ours = tiny_vae.encode(video, sample=False)
    assert ours.shape == (2, 16, 5, 3, 4)
    assert_close(ours, expected)


def test_encode_samples_posterior_with_global_rng(tiny_vae):
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    torch.manual_seed(11)
    sampled = tiny_vae.encode(video)
    posterior = DiagonalGaussianDistribution(tiny_vae.encoder(video))
    torch.manual_seed(11)
    expected = posterior.mean + posterior.std * torch.randn_like(posterior.mean)
    assert torch.equal(sampled, expected)
    assert not torch.equal(sampled, tiny_vae.encode(video, sample=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("frames", [9, 8])
def test_time_downsample_is_the_references_avg_pool1d(frames, dtype):
    """The reference pools time as (b h w) c t with avg_pool1d; ours matches it bit for bit, in bf16 on the CPU too."""
    from vae_modules.resample import average_frame_pairs

    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 4, frames, 5, 6, generator=generator) * 3).to(dtype)  # (b, c, t, h, w)
    rest = x[:, :, frames % 2:]
    rows = rest.permute(0, 3, 4, 1, 2).reshape(-1, 4, rest.shape[2])  # (b h w, c, t)
    pooled = torch.nn.functional.avg_pool1d(rows, kernel_size=2, stride=2)
    expected = pooled.reshape(2, 5, 6, 4, -1).permute(0, 3, 4, 1, 2)  # (b, c, t // 2, h, w)
    assert torch.equal(average_frame_pairs(rest), expected)


def test_bf16_encode_runs_on_the_cpu(tiny_vae):
    """bf16 fine-tuning encodes videos in bf16 (avg_pool3d has no bf16 CPU kernel)."""
    video = torch.rand(1, 3, 9, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    bf16 = copy.deepcopy(tiny_vae).to(torch.bfloat16)
    ours = bf16.encode(video.to(torch.bfloat16), sample=False)
    expected = tiny_vae.encode(video, sample=False)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), expected, atol=0.1 * expected.abs().max().item(), rtol=0)


# ---------------------------------------------------------------- conversion


def test_conversion_round_trip_is_exact(tiny_vae, tmp_path):
    state_dict = tiny_vae.state_dict()
    save_diffusers(dict(state_dict), str(tmp_path / "diffusers"))
    back = load_diffusers_as_sat(str(tmp_path / "diffusers"))
    assert back.keys() == state_dict.keys()
    assert all(torch.equal(back[k], state_dict[k]) for k in state_dict)
    assert diffusers_to_sat(sat_to_diffusers(state_dict)).keys() == state_dict.keys()


def test_conversion_cli_round_trip(tiny_vae, tmp_path):
    state_dict = dict(tiny_vae.state_dict())
    torch.save({"state_dict": state_dict}, tmp_path / "3d-vae.pt")
    convert_main(["to-diffusers", str(tmp_path / "3d-vae.pt"), str(tmp_path / "hf")])
    convert_main(["to-sat", str(tmp_path / "hf"), str(tmp_path / "back.pt")])
    back = torch.load(tmp_path / "back.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(back[k], state_dict[k]) for k in state_dict) and back.keys() == state_dict.keys()


def test_conversion_rejects_unknown_keys(tiny_vae):
    state_dict = dict(tiny_vae.state_dict())
    with pytest.raises(InputError, match="encoder.extra.weight"):
        sat_to_diffusers({**state_dict, "encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(InputError, match="decoder.mystery"):
        diffusers_to_sat({**sat_to_diffusers(state_dict), "decoder.mystery": torch.zeros(1)})


def test_conversion_outputs_follow_the_umask_and_are_named(tiny_vae, tmp_path, capsys):
    """save_pretrained writes its safetensors 0600; the converter's outputs get the umask's modes like the other
    tools', and each output is named in one line at the end."""
    torch.save({"state_dict": dict(tiny_vae.state_dict())}, tmp_path / "3d-vae.pt")
    old = os.umask(0o022)
    try:
        convert_main(["to-diffusers", str(tmp_path / "3d-vae.pt"), str(tmp_path / "hf")])
        convert_main(["to-sat", str(tmp_path / "hf"), str(tmp_path / "back.pt")])
    finally:
        os.umask(old)
    assert capsys.readouterr().out.splitlines() == [f"wrote the diffusers VAE folder {tmp_path / 'hf'}",
                                                    f"wrote the SAT VAE file {tmp_path / 'back.pt'}"]
    written = [tmp_path / "hf", *(tmp_path / "hf").iterdir(), tmp_path / "back.pt"]
    # the folder, config.json, the safetensors, the output-folder marker (docs/output_folders.md), back.pt
    assert sorted(path.name for path in written) == sorted(["hf", "config.json", "diffusion_pytorch_model.safetensors",
                                                           ".cogvideox-output.json", "back.pt"])
    for path in written:
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


def test_damaged_vae_file_is_one_message_before_the_model_is_built(tiny_vae, tmp_path):
    """check_vae_file (run by sample_video before building) and the loader name the file and what was expected."""
    from vae_modules.autoencoder import check_vae_file

    good = tmp_path / "3d-vae.pt"
    torch.save({"state_dict": dict(tiny_vae.state_dict())}, good)
    data = good.read_bytes()
    expected = "expected a CogVideoX VAE file (3d-vae.pt: torch.save of {'state_dict': ...})"
    for name, content, message in [("empty.pt", b"", "is empty"), ("cut.pt", data[: len(data) // 2], "is not a torch checkpoint"),
                                   ("text.pt", b"hello\n", "is not a torch checkpoint")]:
        (tmp_path / name).write_bytes(content)
        for call in (check_vae_file, lambda path: instantiate_from_config(vae_config(TINY_CONFIG, path))):
            with pytest.raises(InputError) as info:
                call(str(tmp_path / name))
            assert str(info.value).startswith(f"{tmp_path / name} {message}") and str(info.value).endswith(expected)
