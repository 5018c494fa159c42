"""Fine-tuning the tiny CogVideoX1.5 models on a folder of mixed videos with data buckets (issue 21), in-process with
the shipped tiny bucket config: every batch holds one bucket and the clips land in the expected buckets; a resumed
run equals the uninterrupted one with validation on; a latent cache gives the same losses; a one-bucket config
trains the one-size path's items bit for bit; I2V LoRA trains with the first frame at the bucket's size."""

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import train_video
from tiny.videos import distinct_waves, write_clip, write_mixed
from cache_runs import LossRecorder
from data_video import SFTDataset
from diffusion_video import SATVideoDiffusionEngine
from input_errors import InputError
from latent_cache.run_inputs import check_cache
from test_train_1_5 import I2V, I2V_LORA, T2V, T2V_LORA, paths_config
from tools import precompute
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # DeepSpeed training runs

REPO = Path(__file__).resolve().parents[1]
SFT_BUCKETS = str(REPO / "configs/tiny/sft_tiny_1.5_buckets.yaml")
SFT_ONE_SIZE = str(REPO / "configs/tiny/sft_tiny_1.5.yaml")
# the clips of tiny.videos.MIXED at 4 fps: 2 s clips fill 5 frames, 3 s and longer 9; nearest ratio
EXPECTED = {"landscape_a": (9, 64, 96), "landscape_b": (5, 64, 96), "portrait_a": (5, 96, 64),
            "portrait_b": (9, 96, 64), "square_a": (9, 80, 80), "square_b": (9, 80, 80)}
STEPS, EVERY = 4, 2


class ShapeRecorder:
    """The latent shape (b, t, c, h, w) of every loss computed, training and validation, in order."""

    def __init__(self, monkeypatch):
        self.shapes: list[tuple[int, ...]] = []
        forward = SATVideoDiffusionEngine.forward

        def recording(engine, x, batch):
            self.shapes.append(tuple(x.shape))
            return forward(engine, x, batch)

        monkeypatch.setattr(SATVideoDiffusionEngine, "forward", recording)

    def take(self) -> list[tuple[int, ...]]:
        shapes, self.shapes = self.shapes, []
        return shapes


def latent_shape(bucket: tuple[int, int, int]) -> tuple[int, ...]:
    """(t, c, h, w) of a bucket's item on the tiny 1.5 model: 3 or 2 latent frames padded in front to 4 or 2."""
    frames, height, width = bucket
    latents = (frames - 1) // 4 + 1
    return (latents + latents % 2, 16, height // 8, width // 8)


def run(setup, name: str, model: str, sft: str, data: str, **args) -> Path:
    root = setup["root"]
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({"args": {
        "load": str(setup["weights"] / "transformer"), "train_data": [data], "valid_data": [data],
        "save": str(root / name), "train_iters": STEPS, "save_interval": EVERY, "eval_interval": EVERY,
        "log_interval": 1, "experiment_name": name, "summary_dir": str(root), **args}}), override)
    train_video.main(["--base", model, sft, setup["paths"], str(override), "--seed", "1"])
    if not (root / name).exists():  # a run resumed from a run folder goes on in it (one run, one folder)
        return Path(args["load"])
    (folder,) = (root / name).iterdir()
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("buckets")
    make_tiny_weights(T2V, str(root / "weights"), seed=0)
    data = write_mixed(root / "mixed")
    paths = paths_config(T2V_LORA, root / "weights", root / "paths.yaml")
    return {"root": root, "weights": root / "weights", "data": str(data), "paths": paths}


@pytest.fixture(scope="module")
def runs(setup):
    with pytest.MonkeyPatch.context() as monkeypatch:
        losses, shapes = LossRecorder(monkeypatch), ShapeRecorder(monkeypatch)
        straight = run(setup, "straight", T2V_LORA, SFT_BUCKETS, setup["data"])
        result = {"straight": (straight, losses.take(), shapes.take())}
        killed = setup["root"] / "killed"  # what a run stopped after its checkpoint at EVERY leaves
        shutil.copytree(straight / str(EVERY), killed / str(EVERY))
        (killed / "latest").write_text(str(EVERY))
        result["resumed"] = (run(setup, "resumed", T2V_LORA, SFT_BUCKETS, setup["data"], load=str(killed)),
                             losses.take(), shapes.take())
        cache = precompute.main(["--base", T2V_LORA, SFT_BUCKETS, setup["paths"], "--output",
                                 str(setup["root"] / "cache"), "--data", setup["data"]])[0]
        result["cache"] = (run(setup, "cached", T2V_LORA, SFT_BUCKETS, str(cache)), losses.take(), shapes.take())
        result["cache folder"] = cache
    return result


def test_clips_go_to_the_expected_buckets(setup):
    params = OmegaConf.to_container(OmegaConf.load(SFT_BUCKETS).data.params)
    dataset = SFTDataset(setup["data"], **params)
    assert {Path(e.path).stem: tuple(e.bucket) for e in dataset.entries} == EXPECTED
    for index, entry in enumerate(dataset.entries):
        assert tuple(dataset[index]["mp4"].shape) == (entry.bucket.frames, 3, entry.bucket.height, entry.bucket.width)


def test_every_batch_one_bucket(runs):
    _, losses, shapes = runs["straight"]
    assert len(losses) == len(shapes) == STEPS + STEPS // EVERY  # 4 training steps, 2 validations
    allowed = {latent_shape(bucket) for bucket in EXPECTED.values()}
    assert all(shape[0] == 1 and shape[1:] in allowed for shape in shapes), shapes
    assert len({shape[1:] for shape in shapes}) > 1  # the run met several buckets


def test_resumed_run_equals_the_uninterrupted_one_with_validation_on(runs):
    (straight, losses, shapes), (resumed, resumed_losses, resumed_shapes) = runs["straight"], runs["resumed"]
    # train 3, train 4, validation 4: bitwise, in the same buckets
    assert resumed_losses == losses[3:] and resumed_shapes == shapes[3:]
    torch.testing.assert_close(torch.load(resumed / "video/latents/latents_gs-000004/latent.pt"),
                               torch.load(straight / "video/latents/latents_gs-000004/latent.pt"), rtol=0, atol=0)


def test_cached_losses_equal_the_videos(runs):
    _, losses, shapes = runs["straight"]
    _, cached_losses, cached_shapes = runs["cache"]
    assert cached_shapes == shapes
    torch.testing.assert_close(torch.tensor(cached_losses, dtype=torch.float64),
                               torch.tensor(losses, dtype=torch.float64), rtol=1e-6, atol=0)


def test_cache_made_with_other_buckets_is_refused(runs):
    params = OmegaConf.load(SFT_BUCKETS).data.params
    model = OmegaConf.merge(OmegaConf.load(T2V_LORA), OmegaConf.load(runs["straight"][0].parents[1] / "paths.yaml"))
    check_cache(str(runs["cache folder"]), model.model, params, "fp32")  # the run's own buckets: accepted
    params.buckets = [[9, 64, 96], [9, 96, 64]]
    with pytest.raises(InputError, match=r"made with other settings or weights than this run's configs: "
                                         r"data\.buckets: cache \[\[9, 64, 96\], \[9, 96, 64\], \[9, 80, 80\], "
                                         r"\[5, 64, 96\], \[5, 96, 64\], \[5, 80, 80\]\], run \[\[9, 64, 96\], "
                                         r"\[9, 96, 64\]\]"):
        check_cache(str(runs["cache folder"]), model.model, params, "fp32")


def test_one_bucket_trains_the_one_size_items_bit_for_bit(setup, monkeypatch):
    """[[9, 64, 96]] against video_size [64, 96], max_num_frames 9 at the same fps: the same items for every clip
    that fills 9 frames, and the same training on a one-video folder (the order of items is the buckets' by design:
    every item once per epoch instead of SAT's draws with replacement)."""
    one_size = {"video_size": [64, 96], "fps": 4, "max_num_frames": 9, "skip_frms_num": 3.0}
    one_bucket = {"fps": 4, "skip_frms_num": 3.0, "buckets": [[9, 64, 96]]}
    plain_items, bucket_items = SFTDataset(setup["data"], **one_size), SFTDataset(setup["data"], **one_bucket)
    # the clips lasting more than 9 frames at 4 fps; the one-size path also pads or slows down the 2 s clips
    assert sorted(Path(e.path).stem for e in bucket_items.entries) == sorted(
        name for name, bucket in EXPECTED.items() if bucket[0] == 9)
    plain_index = {Path(e.path).stem: i for i, e in enumerate(plain_items.entries)}
    for index, entry in enumerate(bucket_items.entries):
        plain = plain_items[plain_index[Path(entry.path).stem]]
        item = bucket_items[index]
        assert torch.equal(item["mp4"], plain["mp4"]) and item["num_frames"] == plain["num_frames"] == 9

    single = setup["root"] / "single"
    write_clip(single, "landscape", "landscape waves drifting", 54, 96, 3, **distinct_waves(0))
    OmegaConf.save(OmegaConf.create({"data": {"params": {**one_size, "video_size": None, "max_num_frames": None,
                                                         "buckets": one_bucket["buckets"]}}}), setup["root"] / "one.yaml")
    OmegaConf.save(OmegaConf.create({"data": {"params": one_size}}), setup["root"] / "size.yaml")
    losses = LossRecorder(monkeypatch)
    runs = {}
    for name, extra in (("one-size", "size.yaml"), ("one-bucket", "one.yaml")):
        sft = setup["root"] / f"sft-{name}.yaml"
        OmegaConf.save(OmegaConf.merge(OmegaConf.load(SFT_ONE_SIZE), OmegaConf.load(setup["root"] / extra)), sft)
        folder = run(setup, name, T2V_LORA, str(sft), str(single), train_iters=2, save_interval=1000)
        runs[name] = (losses.take(), torch.load(folder / "video/latents/latents_gs-000002/latent.pt"))
    assert runs["one-bucket"][0] == runs["one-size"][0] and len(runs["one-size"][0]) == 3
    assert torch.equal(runs["one-bucket"][1], runs["one-size"][1])


def test_i2v_lora_trains_at_each_bucket(setup, monkeypatch, tmp_path):
    make_tiny_weights(I2V, str(tmp_path / "weights"), seed=0)
    paths = paths_config(I2V_LORA, tmp_path / "weights", tmp_path / "paths.yaml")
    shapes, losses = ShapeRecorder(monkeypatch), LossRecorder(monkeypatch)
    images = []
    encode = SATVideoDiffusionEngine.encode_training_image
    monkeypatch.setattr(SATVideoDiffusionEngine, "encode_training_image",
                        lambda engine, batch: images.append(encode(engine, batch)) or images[-1])
    i2v = {"root": tmp_path, "weights": tmp_path / "weights", "paths": paths}
    folder = run(i2v, "i2v", I2V_LORA, SFT_BUCKETS, setup["data"], train_iters=3, eval_interval=3, save_interval=1000)
    shapes, losses = shapes.take(), losses.take()
    assert len(shapes) == 4 and all(torch.isfinite(torch.tensor(losses)))
    allowed = {latent_shape(bucket) for bucket in EXPECTED.values()}
    assert all(shape[1:] in allowed for shape in shapes), shapes
    # the first frame's latent (b, 1, c, h, w) at the size of each step's bucket (validation encodes it twice)
    assert [image.shape[3:] for image in images] == [shape[3:] for shape in shapes[:3] + shapes[3:] * 2]
    latent = torch.load(folder / "video/latents/latents_gs-000003/latent.pt", weights_only=True)
    assert tuple(latent.shape[1:]) == shapes[-1][1:]  # validation sampled at its item's bucket
