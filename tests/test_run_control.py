"""What a training run does around its steps: each run its own folder, even when two start in the same minute
with the same name; Ctrl-C ends it in one line saying where it stopped and what it saved, with exit status 130."""

import os
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from decord import video_reader
from omegaconf import OmegaConf
from sat.training import deepspeed_training

import train_video
from test_train_finetune import LORA_MODEL, REPO, SFT, weights_config, write_video
from tiny.weights import make_tiny_weights
from training.run_folder import claim_run_folder


def test_runs_racing_for_one_folder_each_get_their_own(tmp_path):
    folder = str(tmp_path / "ckpts" / "lora-tiny-12-02-19-40")
    start = threading.Barrier(4)

    def claim(_):
        start.wait()
        return claim_run_folder(folder)

    with ThreadPoolExecutor(4) as pool:
        claimed = sorted(pool.map(claim, range(4)))
    assert claimed == [folder, f"{folder}-2", f"{folder}-3", f"{folder}-4"]
    assert all(os.path.isdir(path) and not os.listdir(path) for path in claimed)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_control")
    make_tiny_weights(LORA_MODEL, str(root / "weights"), seed=0)
    write_video(root / "data", "wave", "colourful waves drifting to the left")
    weights_config(root, root / "paths.yaml")
    return root


def run_config(root, name: str, **args) -> str:
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({"args": {
        "load": str(root / "weights/transformer"), "train_data": [str(root / "data")], "valid_data": None,
        "save": str(root / "ckpts"), "log_interval": 1, "summary_dir": str(root), **args}}), override)
    return str(override)


class FixedMinute(datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 12, 2, 19, 40, 0)


@pytest.mark.slow  # two DeepSpeed training runs
def test_two_runs_in_the_same_minute_write_to_their_own_folders(tiny, monkeypatch):
    monkeypatch.setattr(deepspeed_training, "datetime", FixedMinute)
    for name in ("first", "second"):
        config = run_config(tiny, name, experiment_name="same", train_iters=1, save_interval=1)
        train_video.main(["--base", LORA_MODEL, SFT, str(tiny / "paths.yaml"), config, "--seed", "1"])
    folders = sorted(p.name for p in (tiny / "ckpts").iterdir())
    assert folders == ["same-12-02-19-40", "same-12-02-19-40-2"]
    for folder in folders:
        assert (tiny / "ckpts" / folder / "latest").read_text().strip() == "1"
        assert (tiny / "ckpts" / folder / "training_config.yaml").is_file()


@pytest.mark.slow  # a DeepSpeed training run in a subprocess
def test_ctrl_c_ends_in_one_line_with_the_last_checkpoint_and_status_130(tiny):
    config = run_config(tiny, "interrupted", experiment_name="interrupted", train_iters=100000, save_interval=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # set by an in-process run of train_video earlier in this session
    command = [sys.executable, str(REPO / "train_video.py"), "--base", LORA_MODEL, SFT, str(tiny / "paths.yaml"),
               config, "--seed", "1"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:  # until the first checkpoint is published
        output.append(line)
        if "saved checkpoint 2 " in line:
            break
    else:
        pytest.fail("".join(output[-40:]))
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=300)
    output = "".join(output) + rest
    assert process.returncode == 130, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("interrupted")]
    match = re.fullmatch(r"interrupted after (\d+) of 100000 iterations: last checkpoint: (\S+)/(\d+) "
                         r"\(continue with --load (\S+)\)", line)
    assert match, line
    done, folder, saved, load = int(match[1]), match[2], int(match[3]), match[4]
    assert folder == load and os.path.dirname(folder) == str(tiny / "ckpts")
    assert saved >= 2 and saved % 2 == 0 and saved <= done
    with open(os.path.join(folder, "latest")) as latest:
        assert int(latest.read()) == saved


@pytest.mark.slow  # a DeepSpeed training run
def test_one_ctrl_c_stops_the_run_when_python_loses_it_in_a_finalizer(tiny, monkeypatch, capsys):
    """The SIGINT arrives while decord's VideoReader.__del__ frees its decoder, at the first video read after the
    first checkpoint: Python loses a KeyboardInterrupt raised in a finalizer, and the run went on training (seen
    once under load). It must stop at its next step, in the one line, status 130, no traceback."""
    free_decoder, sent = video_reader._CAPI_VideoReaderFree, []

    def free_with_ctrl_c(handle):
        if not sent and list((tiny / "lost").glob("*/latest")):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # handled on the next bytecode: in VideoReader.__del__
        return free_decoder(handle)

    monkeypatch.setattr(video_reader, "_CAPI_VideoReaderFree", free_with_ctrl_c)
    config = run_config(tiny, "lost", experiment_name="lost", train_iters=4, save_interval=1,
                        save=str(tiny / "lost"))
    with pytest.raises(SystemExit) as stopped:
        train_video.main(["--base", LORA_MODEL, SFT, str(tiny / "paths.yaml"), config, "--seed", "1"])
    out, err = capsys.readouterr()
    assert sent and stopped.value.code == 130
    assert "Traceback" not in out + err and "Exception ignored" not in out + err, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("interrupted")]
    (folder,) = (tiny / "lost").iterdir()
    # the signal came in iteration 2's read; that step ends (and is saved), the next one stops the run
    assert line == f"interrupted after 2 of 4 iterations: last checkpoint: {folder}/2 (continue with --load {folder})"
