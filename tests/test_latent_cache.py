"""The latent cache: items equal a fresh encode, precompute resumes, bad caches are refused by name, and an engine
without T5 / VAE encoder gives the same latents, losses and validation samples as the full engine."""

import argparse
import os
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tiny.videos import write_dataset
from data_video import SFTDataset
from input_errors import InputError
from latent_cache.dataset import LatentCacheDataset
from latent_cache.manifest import MANIFEST_NAME
from latent_cache.posterior import sample_cached_posterior
from latent_cache.precompute import precompute
from latent_cache.run_inputs import PrecomputedInputs, check_run_inputs
from latent_cache.store import ITEMS_DIR, item_file, read_item
from tiny_models import build_engine
from torch.utils.data import default_collate

FRAMES = 5
DATA = {"video_size": [64, 96], "fps": 8, "max_num_frames": FRAMES, "skip_frms_num": 3.0}


@pytest.fixture(scope="module")
def made(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("latent_cache")
    data = write_dataset(root / "data", 2)
    config = tiny_models.model_config()
    cache = precompute(config, DATA, [str(data)], root / "cache", "fp32", torch.device("cpu"))[0]
    return {"root": root, "data": data, "cache": cache, "config": config}


def run_args(made, train, valid=None, data=DATA, config=None):
    return argparse.Namespace(train_data=[str(p) for p in train], valid_data=valid, only_log_video_latents=True,
                              model_config=config or made["config"], data_config=OmegaConf.create({"params": data}))


def test_items_are_the_encoders_outputs(tiny_models, made):
    engine = build_engine(tiny_models)
    fresh = SFTDataset(str(made["data"]), **DATA)
    cached = LatentCacheDataset(made["cache"])
    assert len(cached) == len(fresh) == 2
    for index in range(2):
        item, video_item = cached[index], fresh[index]
        video = video_item["mp4"][None].permute(0, 2, 1, 3, 4)  # (1, 3, T, H, W)
        mean, logvar = engine.first_stage_model.encode_moments(video)[0].chunk(2, dim=0)
        assert torch.equal(item["posterior_mean"], mean) and torch.equal(item["posterior_logvar"], logvar)
        embedding = engine.conditioner.embedders[0]([video_item["txt"]])[0]
        assert torch.equal(item["txt_embedding"], embedding)
        assert (item["txt"], item["num_frames"], item["fps"]) == (video_item["txt"], video_item["num_frames"], 8)


def test_cached_posterior_sample_is_the_encode_sample(tiny_models, made):
    engine = build_engine(tiny_models)
    batch = default_collate([LatentCacheDataset(made["cache"])[i] for i in range(2)])
    videos = torch.stack([SFTDataset(str(made["data"]), **DATA)[i]["mp4"] for i in range(2)]).permute(0, 2, 1, 3, 4)
    torch.manual_seed(5)
    fresh = engine.first_stage_model.encode(videos)
    torch.manual_seed(5)
    cached = sample_cached_posterior(batch)
    # the items were encoded one at a time; a batch of two through the encoder differs by float rounding only
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-5)
    torch.manual_seed(5)
    one = engine.first_stage_model.encode(videos[:1])
    torch.manual_seed(5)
    assert torch.equal(sample_cached_posterior({k: v[:1] for k, v in batch.items() if k != "txt"}), one)


def engines(tiny_models, made):
    """The full engine, and the one a run whose every dataset is a cache builds (LoRA-free tiny config)."""
    full = build_engine(tiny_models)
    args = argparse.Namespace(model_config=made["config"], fp16=False, bf16=False,
                              precomputed_inputs=PrecomputedInputs(decode_videos=False))
    from diffusion_video import SATVideoDiffusionEngine
    from checkpoints.sat_checkpoint import load_sat_checkpoint

    cached = SATVideoDiffusionEngine(args)
    load_sat_checkpoint(cached, str(tiny_models.transformer))
    return full, cached.eval()


def test_engine_from_cache_has_no_t5_or_vae_and_gives_the_same_loss_and_samples(tiny_models, made):
    full, cached = engines(tiny_models, made)
    assert cached.first_stage_model is None
    assert not [n for n, _ in cached.named_parameters() if not n.startswith("model.")]
    items = [LatentCacheDataset(made["cache"])[i] for i in range(2)]
    cached_batch = default_collate(items)
    video_batch = default_collate([SFTDataset(str(made["data"]), **DATA)[i] for i in range(2)])
    losses = []
    for engine, batch in ((full, video_batch), (cached, cached_batch)):
        torch.manual_seed(11)  # draws: posterior sample, text dropout (ucg 0.1), timestep, noise
        with torch.no_grad():
            losses.append(engine.shared_step(batch)[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)
    logs = []
    for engine, batch in ((full, video_batch), (cached, cached_batch)):
        torch.manual_seed(3)
        logs.append(engine.log_video(batch, only_log_video_latents=True, generator=torch.Generator().manual_seed(4)))
        logs[-1]["after"] = torch.rand(1)  # the global RNG is left as the uncached path leaves it
    assert "inputs" not in logs[1]
    torch.testing.assert_close(logs[1]["latents"], logs[0]["latents"], rtol=1e-5, atol=1e-6)
    assert torch.equal(logs[1]["after"], logs[0]["after"])


def test_run_inputs_all_caches_and_mixed(made):
    assert check_run_inputs(run_args(made, [made["cache"]], [str(made["cache"])]), "fp32") == PrecomputedInputs(False)
    assert check_run_inputs(run_args(made, [made["cache"]], [str(made["data"])]), "fp32") is None  # valid from videos
    with pytest.raises(InputError, match="mixes latent caches and video folders"):
        check_run_inputs(run_args(made, [made["cache"], made["data"]]), "fp32")


@pytest.mark.parametrize("problem, match", [
    ("empty", "is neither a video dataset"),
    ("foreign", "is neither a video dataset"),
    ("missing", "does not exist"),
    ("no manifest", "cache_manifest.json is missing"),
    ("truncated", "clip1.safetensors is missing or truncated"),
    ("bad manifest", "is not a cache manifest"),
])
def test_bad_cache_folders_are_refused_by_name(made, tmp_path, problem, match):
    folder = tmp_path / "given"
    if problem == "foreign":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    elif problem == "empty":
        folder.mkdir()
    elif problem != "missing":
        shutil.copytree(made["cache"], folder)
        if problem == "no manifest":
            (folder / MANIFEST_NAME).unlink()
        elif problem == "bad manifest":
            (folder / MANIFEST_NAME).write_text('{"format": "something else"}')
        else:
            path = item_file(folder, ITEMS_DIR, "clip1")
            path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=match) as caught:
        check_run_inputs(run_args(made, [folder]), "fp32")
    assert str(folder) in str(caught.value)


@pytest.mark.parametrize("key, value", [("max_num_frames", 9), ("video_size", [128, 96]), ("fps", 4)])
def test_cache_for_other_data_settings_is_refused(made, key, value):
    with pytest.raises(InputError, match=rf"{made['cache']} was made with other settings.*data\.{key}: cache") as err:
        check_run_inputs(run_args(made, [made["cache"]], data={**DATA, key: value}), "fp32")
    assert len(str(err.value)) < 400, str(err.value)  # what the user must change, not the cache's file lists


def test_cache_for_other_weights_or_precision_is_refused(made, tiny_models):
    with pytest.raises(InputError, match="dtype: cache 'fp32', run 'bf16'"):
        check_run_inputs(run_args(made, [made["cache"]]), "bf16")
    stat = os.stat(tiny_models.vae)
    try:
        os.utime(tiny_models.vae, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(InputError, match=rf"VAE weights: {Path(tiny_models.vae).name} differ in name, size or "
                                             rf"time \(cache made from .*\)\. Make a new cache"):
            check_run_inputs(run_args(made, [made["cache"]]), "fp32")
    finally:
        os.utime(tiny_models.vae, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_image_to_video_configs_are_refused(made):
    config = made["config"].copy()
    config.noised_image_input = True
    with pytest.raises(InputError, match="not supported for image-to-video"):
        check_run_inputs(run_args(made, [made["cache"]], config=config), "fp32")


def test_precompute_resumes_keeping_complete_items(made, tiny_models, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(made["cache"], cache)
    kept, cut = item_file(cache, ITEMS_DIR, "clip0"), item_file(cache, ITEMS_DIR, "clip1")
    tensors, metadata = read_item(cut)
    original = ({key: value.clone() for key, value in tensors.items()}, metadata)  # the file is memory-mapped
    del tensors
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a crash mid-write of a non-atomic writer
    (cache / ITEMS_DIR / ".clip1.safetensors.999.tmp").write_bytes(b"partial")  # an atomic writer's leftover
    kept_mtime = kept.stat().st_mtime_ns
    precompute(made["config"], DATA, [str(made["data"])], cache, "fp32", torch.device("cpu"))
    assert kept.stat().st_mtime_ns == kept_mtime
    redone = read_item(cut)
    assert redone[1] == original[1] and redone[0].keys() == original[0].keys()
    for key, value in original[0].items():
        assert torch.equal(redone[0][key], value), (key, (redone[0][key] - value).abs().max())
    check_run_inputs(run_args(made, [cache]), "fp32")


def test_precompute_reencodes_a_changed_source_and_refuses_other_settings(made, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(made["cache"], cache)
    video = made["data"] / "videos/clip0.mp4"
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        before = {name: item_file(cache, ITEMS_DIR, name).stat().st_mtime_ns for name in ("clip0", "clip1")}
        precompute(made["config"], DATA, [str(made["data"])], cache, "fp32", torch.device("cpu"))
        assert item_file(cache, ITEMS_DIR, "clip0").stat().st_mtime_ns != before["clip0"]
        assert item_file(cache, ITEMS_DIR, "clip1").stat().st_mtime_ns == before["clip1"]
    finally:
        os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(InputError, match="holds a cache made with other settings.*max_num_frames"):
        precompute(made["config"], {**DATA, "max_num_frames": 9}, [str(made["data"])], cache, "fp32",
                   torch.device("cpu"))


def test_precompute_skips_what_the_dataset_skips_with_its_warnings(made, tmp_path, caplog):
    data = write_dataset(tmp_path / "data", 2)
    (data / "videos/broken.mp4").write_bytes(b"not a video")
    (data / "labels/broken.txt").write_text("a broken clip\n")
    shutil.copy(data / "videos/clip0.mp4", data / "videos/uncaptioned.mp4")
    with caplog.at_level("WARNING"):
        cache = precompute(made["config"], DATA, [str(data)], tmp_path / "cache", "fp32", torch.device("cpu"))[0]
    assert "skipping unreadable video" in caplog.text and "no caption" in caplog.text
    assert [LatentCacheDataset(cache)[i]["txt"] for i in range(2)] == ["waves number 0 drifting",
                                                                      "waves number 1 drifting"]
    assert len(LatentCacheDataset(cache)) == 2 and not list((cache / "parts").iterdir())
    with pytest.raises(InputError, match="is a non-empty folder that is not a latent cache"):
        precompute(made["config"], DATA, [str(data)], data / "videos", "fp32", torch.device("cpu"))
