"""Validation videos in wandb (offline run files) and TensorBoard (event files), read back: keys, steps, frames."""

import argparse
import glob
import hashlib
import io
import json
import os
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageSequence
from tensorboardX import SummaryWriter
from tensorboardX.proto.event_pb2 import Event

from test_train_finetune import REPO, SFT, weights_config, write_video
from tiny.weights import make_tiny_weights
from training.eval_logging import write_eval_log
from training.forward_step import publish_videos
from training.video_summaries import TEXT_TAG, log_to_tensorboard, log_to_wandb

LORA_MODEL = "configs/tiny/cogvideox_tiny_lora.yaml"
WANDB_BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of (crc32, length, type) chunks


def tensorboard_events(folder: Path) -> list[Event]:
    """Every event of the TFRecord event files under `folder` (length, crc, payload, crc per record)."""
    events = []
    for path in sorted(glob.glob(str(folder / "**" / "events.out.tfevents.*"), recursive=True)):
        data = Path(path).read_bytes()
        position = 0
        while position < len(data):
            (length,) = struct.unpack("<Q", data[position:position + 8])
            events.append(Event.FromString(data[position + 12:position + 12 + length]))
            position += 12 + length + 4
    return events


def wandb_records(run_file: Path) -> list:
    """The records of an offline run's `run-<id>.wandb`, in order."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    position, pending, records = 7, b"", []
    while position + 7 <= len(data):
        if WANDB_BLOCK - position % WANDB_BLOCK < 7:  # a block's tail too short for a header is padding
            position += WANDB_BLOCK - position % WANDB_BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def wandb_history(run_file: Path, wait_s: float = 120.0) -> dict[int, dict]:
    """{step: {key: value}} of the history records of an offline run, once its `exit` record is written (wandb's
    service writes the file after the run's process returns from `finish` or exits)."""
    deadline = time.monotonic() + wait_s
    records = wandb_records(run_file)
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.5)
        records = wandb_records(run_file)
    history = {}
    for record in (r for r in records if r.WhichOneof("record_type") == "history"):
        items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        history.setdefault(record.history.step.num, {}).update(items)
    return history


def gif_frames(encoded: bytes) -> list[np.ndarray]:
    return [np.array(frame.convert("RGB")) for frame in ImageSequence.Iterator(Image.open(io.BytesIO(encoded)))]


def video_summaries(events: list[Event]) -> dict[str, tuple[int, object]]:
    """{tag: (step, image summary)} of the image summaries (TensorBoard's videos)."""
    return {value.tag: (event.step, value.image) for event in events if event.HasField("summary")
            for value in event.summary.value if value.HasField("image")}


def test_tensorboard_holds_each_video_as_its_frames_at_the_iteration(tmp_path):
    videos = {"inputs": torch.rand(2, 3, 3, 8, 12) * 2 - 1, "samples": torch.rand(2, 3, 3, 8, 12) * 2 - 1}
    writer = SummaryWriter(str(tmp_path))
    log_to_tensorboard(writer, videos, ["a red fox", "rain on a lake"], fps=8, iteration=40)
    writer.close()
    events = tensorboard_events(tmp_path)
    summaries = video_summaries(events)
    assert sorted(summaries) == ["inputs_video_0", "inputs_video_1", "samples_video_0", "samples_video_1"]
    for key, batch in videos.items():
        for index, video in enumerate(batch):
            step, image = summaries[f"{key}_video_{index}"]
            expected = ((video + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
            assert step == 40 and (image.height, image.width, image.colorspace) == (8, 12, 3)
            frames = gif_frames(image.encoded_image_string)
            assert len(frames) == 3 and all(np.array_equal(a, b) for a, b in zip(frames, expected))
            assert abs(Image.open(io.BytesIO(image.encoded_image_string)).info["duration"] - 125) <= 10  # 8 fps
    texts = [(event.step, value.tensor.string_val[0].decode()) for event in events if event.HasField("summary")
             for value in event.summary.value if value.tag.startswith(TEXT_TAG)]
    assert texts == [(40, "0: a red fox\n\n1: rain on a lake")]


def test_wandb_offline_run_holds_the_mp4s_at_the_reference_keys_and_step(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    written = write_eval_log({"samples": torch.rand(2, 5, 3, 16, 16) * 2 - 1}, {"txt": ["a red fox", "rain"], "fps": [8]},
                             str(tmp_path / "save"), 30, only_latents=False)
    run = wandb.init(project="videos", dir=str(tmp_path))
    try:
        log_to_wandb({"samples": written["samples"]}, ["a red fox", "rain"], fps=8, iteration=30)
    finally:
        wandb.finish()
        wandb.teardown()  # the service writes the run's file; teardown waits for it
    history = wandb_history(next(Path(run.dir).parent.glob("run-*.wandb")))
    assert list(history) == [31]  # matches the reference: iteration + 1
    for index, (path, caption) in enumerate(zip(written["samples"], ["a red fox", "rain"])):
        entry = {k.split("/", 1)[1]: v for k, v in history[31].items() if k.startswith(f"samples_video_{index}/")}
        assert entry["_type"] == "video-file" and entry["caption"] == caption
        assert entry["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()  # the mp4 as written
        assert (Path(run.dir) / entry["path"]).read_bytes() == Path(path).read_bytes()


def test_only_latents_logs_nothing(tmp_path):
    """No decoded video, nothing logged (as the reference): neither wandb (no run is started: a call would raise)
    nor TensorBoard."""
    log = {"latents": torch.zeros(1, 2, 4, 2, 2)}
    batch = {"txt": ["a red fox"], "fps": [8]}
    written = write_eval_log(log, batch, str(tmp_path / "save"), 10, only_latents=True)
    writer = SummaryWriter(str(tmp_path / "runs"))
    publish_videos(log, written, batch, argparse.Namespace(wandb=True, iteration=10), writer)
    writer.close()
    assert [e for e in tensorboard_events(tmp_path / "runs") if e.HasField("summary")] == []


@pytest.mark.slow  # an entry-script subprocess: DeepSpeed training with validation sampling
def test_finetune_script_logs_validation_videos_to_wandb_and_tensorboard(tmp_path):
    make_tiny_weights(LORA_MODEL, str(tmp_path / "weights"), seed=0)
    write_video(tmp_path / "data", "wave", "colourful waves drifting to the left")
    paths = weights_config(tmp_path, tmp_path / "paths.yaml")
    override = tmp_path / "run.yaml"
    OmegaConf.save(OmegaConf.create({"args": {
        "load": str(tmp_path / "weights/transformer"), "train_data": [str(tmp_path / "data")],
        "valid_data": [str(tmp_path / "data")], "save": str(tmp_path / "ckpt"), "summary_dir": str(tmp_path),
        "experiment_name": "videos", "train_iters": 2, "eval_interval": 2, "save_interval": 1000, "log_interval": 1,
        "only_log_video_latents": False}}), override)
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}  # WANDB_SERVICE: a run
    # started earlier in this process would serve the script's run too, and finish it only when this process ends
    env |= {"PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # set by an in-process run of train_video earlier in this session
    command = ["bash", "finetune_single_gpu.sh", LORA_MODEL, SFT, paths, str(override), "--wandb"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    folder = next((tmp_path / "ckpt").iterdir())  # SAT appends the start time to the experiment name
    mp4s = {key: folder / f"video/{key}_gs-000002/000000.mp4" for key in ("inputs", "samples")}
    history = wandb_history(next(tmp_path.glob("wandb/offline-run-*/run-*.wandb")))
    for key, mp4 in mp4s.items():  # at iteration + 1 = 3, as the reference
        assert history[3][f"{key}_video_0/sha256"] == hashlib.sha256(mp4.read_bytes()).hexdigest()
        assert history[3][f"{key}_video_0/caption"] == "colourful waves drifting to the left"
    assert history[2]["Train/train_loss"] > 0  # SAT's own metrics in the same run

    events = tensorboard_events(tmp_path / "runs")
    summaries = video_summaries(events)
    losses = {value.tag: event.step for event in events if event.HasField("summary") for value in event.summary.value
              if value.HasField("simple_value")}
    assert losses["Train/valid_loss"] == 2  # beside the loss of the same evaluation
    for key in mp4s:
        step, image = summaries[f"{key}_video_0"]
        assert step == 2 and (image.height, image.width) == (64, 96)
        assert len(gif_frames(image.encoded_image_string)) == 5  # the clip's frames (FRAMES)
