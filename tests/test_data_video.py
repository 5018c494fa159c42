"""SFTDataset on synthetic mp4 folders: selected frames, shapes, skips, laziness, SAT hook."""

import argparse
import logging
from functools import partial
from pathlib import Path

import decord
import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from data_video import SFTDataset
from input_errors import InputError
from video_io import VideoDecodeError

INTENSITY_STEP = 4  # frame i is a uniform grey of value 4 * i (robust to codec error)


def write_video(path: Path, num_frames: int, fps: float, height: int = 64, width: int = 96) -> None:
    """Write an mp4 whose frame i is uniform grey 4 * i."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(
        str(path), fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error"
    )
    for i in range(num_frames):
        writer.append_data(np.full((height, width, 3), INTENSITY_STEP * i, dtype=np.uint8))
    writer.close()


def add_clip(
    root: Path,
    name: str,
    num_frames: int = 40,
    fps: float = 24.0,
    caption: str | None = None,
    height: int = 64,
    width: int = 96,
) -> None:
    """Add videos/<name>.mp4 and, unless caption is None, labels/<name>.txt."""
    write_video(root / "videos" / f"{name}.mp4", num_frames, fps, height, width)
    if caption is not None:
        label = root / "labels" / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(caption + "\nsecond line is ignored\n", encoding="utf-8")


def frame_ids(video: torch.Tensor) -> list[int]:
    """Recover the source frame index of each (C, H, W) frame scaled to [-1, 1]."""
    grey = video * 127.5 + 127.5  # (T, C, H, W) in [0, 255]
    return [round(v / INTENSITY_STEP) for v in grey.mean(dim=(1, 2, 3)).tolist()]


def make(root: Path, **overrides) -> SFTDataset:
    params = dict(video_size=[32, 48], fps=8, max_num_frames=9, skip_frms_num=3.0)
    params.update(overrides)
    return SFTDataset(str(root), **params)


def test_long_clip_item(tmp_path):
    add_clip(tmp_path, "clip", num_frames=40, fps=24.0, caption="a cat")
    item = make(tmp_path)[0]
    assert set(item) == {"mp4", "txt", "num_frames", "fps"}
    assert item["mp4"].shape == (9, 3, 32, 48)
    assert item["mp4"].dtype == torch.float32
    assert item["txt"] == "a cat"
    assert item["num_frames"] == 9
    assert item["fps"] == 8
    # end = int(3 + 9 / 8 * 24) = 30, step 3
    assert frame_ids(item["mp4"]) == [3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_values_are_scaled_integers(tmp_path):
    add_clip(tmp_path, "clip", caption="x")
    video = make(tmp_path)[0]["mp4"]
    assert video.min() >= -1.0 and video.max() <= 1.0
    grey = video * 127.5 + 127.5
    assert torch.allclose(grey, grey.round(), atol=1e-4)


def test_short_clip_takes_4k_plus_1_and_pads(tmp_path):
    # 15 frames <= 17: usable 3..11 (9 frames) -> 9 = 4*2+1, padded with frame 11 to 17.
    add_clip(tmp_path, "short", num_frames=15, fps=24.0, caption="short")
    item = make(tmp_path, max_num_frames=17)[0]
    assert item["num_frames"] == 9
    assert item["mp4"].shape == (17, 3, 32, 48)
    assert frame_ids(item["mp4"]) == list(range(3, 12)) + [11] * 8


def test_pad_case(tmp_path):
    # 12 frames at 24 fps, more than 9: frames 3..8 then the last one repeated.
    add_clip(tmp_path, "pad", num_frames=12, fps=24.0, caption="pad")
    item = make(tmp_path)[0]
    assert item["num_frames"] == 9
    assert frame_ids(item["mp4"]) == [3, 4, 5, 6, 7, 8, 8, 8, 8]


def test_portrait_video(tmp_path):
    add_clip(tmp_path, "tall", caption="tall", height=96, width=64)
    item = make(tmp_path)[0]
    assert item["mp4"].shape == (9, 3, 32, 48)
    assert frame_ids(item["mp4"])[0] == 3


def test_sorted_order_and_nested_folders(tmp_path):
    for name in ["b", "a", "sub/c", "0"]:
        add_clip(tmp_path, name, num_frames=12, caption=f"caption {name}")
    dataset = make(tmp_path)
    captions = [e.caption for e in dataset.entries]
    assert captions == ["caption 0", "caption a", "caption b", "caption sub/c"]
    assert [Path(e.path).name for e in dataset.entries] == ["0.mp4", "a.mp4", "b.mp4", "c.mp4"]


def test_missing_blank_and_unreadable_are_skipped_with_one_warning_each(tmp_path, caplog):
    add_clip(tmp_path, "good", num_frames=12, caption="good")
    add_clip(tmp_path, "nocap", num_frames=12, caption=None)
    add_clip(tmp_path, "blank", num_frames=12, caption="  ")
    add_clip(tmp_path, "latin", num_frames=12, caption=None)
    (tmp_path / "labels" / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    add_clip(tmp_path, "tiny", num_frames=6, caption="too short")
    (tmp_path / "videos" / "bad.mp4").write_bytes(b"not a video" * 50)
    (tmp_path / "labels" / "bad.txt").write_text("bad", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="data_video"):
        dataset = make(tmp_path)
    assert len(dataset) == 1
    assert dataset.entries[0].caption == "good"
    messages = [r.getMessage() for r in caplog.records if r.name == "data_video"]
    for name in ["nocap.mp4", "blank.mp4", "latin.mp4", "tiny.mp4", "bad.mp4"]:
        assert sum(name in m for m in messages) == 1, name
    summary = [m for m in messages if "skipped" in m]
    assert summary == [
        f"{tmp_path}: skipped 5 of 6 files (1 too short, 1 unreadable, 3 without caption)"
    ]


def write_container(path: Path, num_frames: int = 12) -> None:
    """A video in the container named by the path's extension (ffmpeg picks it from the name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(str(path), fps=24, codec="libx264", macro_block_size=1, ffmpeg_log_level="error")
    for i in range(num_frames):
        writer.append_data(np.full((64, 96, 3), INTENSITY_STEP * i, dtype=np.uint8))
    writer.close()


def test_any_case_and_container_is_listed_other_files_warned(tmp_path, caplog):
    for name in ["upper.MP4", "quick.mov", "film.mkv"]:
        write_container(tmp_path / "videos" / name)
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / Path(name).with_suffix(".txt")).write_text(name, encoding="utf-8")
    (tmp_path / "videos" / "notes.txt").write_text("not a video", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="data_video"):
        dataset = make(tmp_path)
    assert [e.caption for e in dataset.entries] == ["film.mkv", "quick.mov", "upper.MP4"]
    assert frame_ids(dataset[2]["mp4"]) == [3, 4, 5, 6, 7, 8, 8, 8, 8]
    messages = [r.getMessage() for r in caplog.records if r.name == "data_video"]
    assert [m for m in messages if "notes.txt" in m] == [
        f"skipping {tmp_path / 'videos' / 'notes.txt'}: not a video file (extensions read: "
        ".3gp .avi .flv .m4v .mkv .mov .mp4 .mpeg .mpg .ogv .ts .webm .wmv)"
    ]
    assert f"{tmp_path}: skipped 1 of 4 files (1 not a video file)" in messages


def test_clip_that_opens_but_does_not_decode_is_skipped_at_listing(tmp_path, caplog):
    # decord opens a 16x16 h264 mp4 but fails to decode it ("Check failed: from_size == to_size").
    add_clip(tmp_path, "good", num_frames=12, caption="good")
    add_clip(tmp_path, "tiny16", num_frames=12, caption="tiny", height=16, width=16)
    with caplog.at_level(logging.WARNING, logger="data_video"):
        dataset = make(tmp_path)
    assert [e.caption for e in dataset.entries] == ["good"]
    [warning] = [r.getMessage() for r in caplog.records if "tiny16.mp4" in r.getMessage()]
    assert warning.startswith(f"skipping undecodable video {tmp_path / 'videos' / 'tiny16.mp4'}")
    assert "from_size == to_size" in warning
    # every item of every epoch decodes: a DataLoader pass over the dataset ends normally
    assert [b["txt"] for b in torch.utils.data.DataLoader(dataset, batch_size=1)] == [["good"]]


def test_clip_whose_item_repeats_frames_is_warned(tmp_path, caplog):
    # 8 frames, skipping 3 at each end: only frame 3 is left, repeated 9 times.
    add_clip(tmp_path, "eight", num_frames=8, caption="eight")
    add_clip(tmp_path, "long", num_frames=40, caption="long")
    with caplog.at_level(logging.WARNING, logger="data_video"):
        dataset = make(tmp_path)
    assert frame_ids(dataset[0]["mp4"]) == [3] * 9
    messages = [r.getMessage() for r in caplog.records if r.name == "data_video"]
    assert messages == [
        f"short clip {tmp_path / 'videos' / 'eight.mp4'}: 8 frames at 24 fps, skipping 3.0 at each end, "
        "yield frame 3; the item repeats the last one to fill 9 frames"
    ]


def test_short_clip_warning_names_the_frame_range(tmp_path, caplog):
    add_clip(tmp_path, "pad", num_frames=12, caption="pad")
    with caplog.at_level(logging.WARNING, logger="data_video"):
        make(tmp_path)
    assert "yield frames 3-8; the item repeats the last one to fill 9 frames" in caplog.text


def test_clip_of_a_slow_source_warns_of_its_frame_rate_and_the_start_it_skips_only(tmp_path, caplog):
    """24 frames at 4 fps last 6 s, more than an item (9 frames at 8 fps): the first case of select_frames, which
    skips 3 frames at the start and does not trim the end; the item's 1.125 s hold 4 source frames, then repeats."""
    add_clip(tmp_path, "slow", num_frames=24, fps=4.0, caption="slow")
    with caplog.at_level(logging.WARNING, logger="data_video"):
        dataset = make(tmp_path)
    assert frame_ids(dataset[0]["mp4"]) == [3, 4, 5, 6, 6, 6, 6, 6, 6]
    messages = [r.getMessage() for r in caplog.records if r.name == "data_video"]
    assert messages == [
        f"low frame rate clip {tmp_path / 'videos' / 'slow.mp4'}: 4 fps is below the target fps 8, so its 24 frames, "
        "skipping 3.0 at the start, yield frames 3-6; the item repeats the last one to fill 9 frames (with "
        "data.params.buckets such a clip's frames are taken at its own rate instead, docs/buckets.md)"
    ]


def test_missing_data_folder_says_it_does_not_exist(tmp_path):
    with pytest.raises(InputError, match=f"data folder {tmp_path / 'nowhere'} does not exist"):
        make(tmp_path / "nowhere")
    with pytest.raises(InputError, match=f"data folder {tmp_path} has no videos/ folder"):
        make(tmp_path)


@pytest.mark.parametrize("layout", ["empty", "only_bad"])
def test_no_usable_video_is_an_input_error(tmp_path, layout):
    (tmp_path / "videos").mkdir()
    if layout == "only_bad":
        add_clip(tmp_path, "nocap", num_frames=12, caption=None)
    with pytest.raises(InputError, match="no usable video") as info:
        make(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "<data_dir>/videos/<name>.mp4" in str(info.value)
    assert "<data_dir>/labels/<name>.txt" in str(info.value)


def test_construction_decodes_only_the_first_frame_of_each_video(tmp_path, monkeypatch):
    for name in ["a", "b", "c"]:
        add_clip(tmp_path, name, num_frames=12, caption=name)
    calls = []
    original = decord.VideoReader.get_batch

    def counting_get_batch(reader, indices):
        calls.append(list(indices))
        return original(reader, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", counting_get_batch)
    monkeypatch.setattr(decord.VideoReader, "__getitem__", lambda *a: pytest.fail("frame decoded"))
    monkeypatch.setattr(decord.VideoReader, "next", lambda *a: pytest.fail("frame decoded"))
    dataset = make(tmp_path)
    assert len(dataset) == 3
    assert calls == [[3], [3], [3]]  # the listing probe: one frame per video
    dataset[1]
    assert calls[3:] == [[3, 4, 5, 6, 7, 8]]  # each distinct frame decoded once


def test_decode_failure_at_item_time_names_the_file(tmp_path):
    add_clip(tmp_path, "clip", num_frames=12, caption="x")
    dataset = make(tmp_path)
    path = tmp_path / "videos" / "clip.mp4"
    path.write_bytes(b"corrupted after listing" * 20)
    with pytest.raises(VideoDecodeError, match=str(path)):
        dataset[0]


def test_decode_failure_at_item_time_uses_the_next_video(tmp_path, caplog):
    for name in ["a", "b", "c"]:
        add_clip(tmp_path, name, num_frames=12, caption=name)
    dataset = make(tmp_path)
    broken = tmp_path / "videos" / "c.mp4"
    broken.write_bytes(b"corrupted after listing" * 20)
    with caplog.at_level(logging.WARNING, logger="data_video"):
        captions = [dataset[i]["txt"] for i in range(3)]
    assert captions == ["a", "b", "a"]  # item 2 wraps to the first video, the same on every rank
    [warning] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("item")]
    assert warning.startswith(f"item 2: failed to decode frames [3, 4, 5, 6, 7, 8] of video {broken}")
    assert warning.endswith("; using the next video instead")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(max_num_frames=8), "4k\\+1"),
        (dict(video_size=[32]), "video_size"),
        (dict(fps=0), "fps"),
    ],
)
def test_bad_parameters(tmp_path, overrides, message):
    add_clip(tmp_path, "clip", num_frames=12, caption="x")
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **overrides)


def test_create_dataset_function_through_sat_loader(tmp_path):
    from sat.data_utils.configure_data import make_dataset_full

    add_clip(tmp_path, "clip", num_frames=12, caption="x")
    params = OmegaConf.create(
        {"video_size": [32, 48], "fps": 8, "max_num_frames": 9, "skip_frms_num": 3.0}
    )
    create = partial(SFTDataset.create_dataset_function, **params)  # as train_video.py binds data.params
    args = argparse.Namespace(iterable_dataset=False, iterable_dataset_eval=False)
    dataset = make_dataset_full([str(tmp_path)], [1.0], args, create, random_mapping=False)
    assert len(dataset) == 1
    assert dataset[0]["mp4"].shape == (9, 3, 32, 48)


def test_create_dataset_function_rejects_unknown_params(tmp_path):
    add_clip(tmp_path, "clip", num_frames=12, caption="x")
    with pytest.raises(ValueError, match="num_frames.*allowed.*max_num_frames"):
        SFTDataset.create_dataset_function(
            str(tmp_path), argparse.Namespace(), video_size=[32, 48], fps=8, num_frames=9
        )


def test_items_of_different_lengths_batch_together(tmp_path):
    add_clip(tmp_path, "long", num_frames=40, caption="long")
    add_clip(tmp_path, "short", num_frames=13, caption="short")  # 5 frames, padded to 13
    batch = next(iter(torch.utils.data.DataLoader(make(tmp_path, max_num_frames=13), batch_size=2)))
    assert batch["mp4"].shape == (2, 13, 3, 32, 48)
    assert batch["num_frames"].tolist() == [13, 5]
    assert batch["fps"].tolist() == [8, 8]
    assert batch["txt"] == ["long", "short"]
