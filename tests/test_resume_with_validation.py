"""Exact resumption with validation on, as `configs/tiny/sft_tiny.yaml` ships (validation and a checkpoint at the
same iterations, `train_data` and `valid_data` the same folder): a run stopped after a checkpoint and resumed from
it computes the uninterrupted run's losses, validation included, and writes the same validation logs; the
uninterrupted run's losses are those recorded before validation and checkpoints were reordered.

Shortened to 4 iterations with a checkpoint and a validation every 2 (the shipped file: 200, every 100): what the
bug needs is a validation right after a checkpoint, and a resumption from that checkpoint.
"""

import logging
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import train_video
from cache_runs import LossRecorder
from tiny.videos import write_dataset
from test_train_finetune import LORA_MODEL, SFT
from tiny.weights import make_tiny_weights, weight_paths

pytestmark = pytest.mark.slow  # DeepSpeed training runs

STEPS, EVERY = 4, 2
# The uninterrupted run's losses in computation order (train 1, train 2, validation 2, train 3, train 4,
# validation 4), recorded with the code before this change (which saved before validating): the change must not
# alter them.
RECORDED = [2.518367290496826, 2.4925785064697266, 3.447901725769043, 2.334273338317871, 3.030665159225464,
            3.1706955432891846]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_valid")
    make_tiny_weights(LORA_MODEL, str(root / "weights"), seed=0)
    data = root / "tiny_data"
    write_dataset(data, 3)
    (data / "videos" / "notes.txt").write_text("not a video\n")  # one listing warning per folder (issue 15, item 13)
    paths = root / "paths.yaml"
    OmegaConf.save(OmegaConf.create({"model": weight_paths(root / "weights")}), paths)
    return {"root": root, "paths": str(paths), "data": str(data)}


def run(setup, name: str, load: str) -> Path:
    """sft_tiny.yaml with the paths of this test and the shortened schedule; returns the run folder."""
    root = setup["root"]
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({"args": {
        "load": load, "train_data": [setup["data"]], "valid_data": [setup["data"]], "save": str(root / name),
        "train_iters": STEPS, "save_interval": EVERY, "eval_interval": EVERY, "log_interval": 1,
        "experiment_name": name, "summary_dir": str(root)}}), override)
    train_video.main(["--base", LORA_MODEL, SFT, setup["paths"], str(override), "--seed", "1"])
    if not (root / name).exists():
        return Path(load)  # a resumed run goes on in the folder it resumed
    (folder,) = (root / name).iterdir()
    return folder


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def runs(setup):
    listing = Records()
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder = LossRecorder(monkeypatch)
        logging.getLogger("data_video").addHandler(listing)
        try:
            straight = run(setup, "straight", str(setup["root"] / "weights/transformer"))
        finally:
            logging.getLogger("data_video").removeHandler(listing)
        straight_losses = recorder.take()
        killed = setup["root"] / "killed"  # what a run stopped after its checkpoint at EVERY leaves
        shutil.copytree(straight / str(EVERY), killed / str(EVERY))
        (killed / "latest").write_text(str(EVERY))
        resumed = run(setup, "resumed", str(killed))
        assert resumed == killed and (killed / "latest").read_text() == str(STEPS)
        return {"straight": (straight, straight_losses), "resumed": (resumed, recorder.take()),
                "listing warnings": listing.messages}


def test_uninterrupted_losses_are_unchanged(runs):
    torch.testing.assert_close(torch.tensor(runs["straight"][1], dtype=torch.float64),
                               torch.tensor(RECORDED, dtype=torch.float64), rtol=1e-6, atol=0)


def test_resumed_run_equals_the_uninterrupted_one_with_validation_on(runs):
    (straight, straight_losses), (resumed, resumed_losses) = runs["straight"], runs["resumed"]
    # train 3, train 4, validation 4: bitwise (before: 3.2691, 2.9348, 3.0051 against 2.3343, 3.0307, 3.1707)
    assert resumed_losses == straight_losses[3:]
    assert (resumed / "video_texts/00000004").read_text() == (straight / "video_texts/00000004").read_text()
    torch.testing.assert_close(torch.load(resumed / "video/latents/latents_gs-000004/latent.pt"),
                               torch.load(straight / "video/latents/latents_gs-000004/latent.pt"), rtol=0, atol=0)


def test_validation_reads_on_after_the_batches_it_read_before(runs):
    straight = runs["straight"][0]
    texts = [(straight / f"video_texts/{i:08d}").read_text() for i in (EVERY, STEPS)]
    assert texts[0] != texts[1]  # the two validations read different videos: the position matters here


def test_listing_warnings_once_per_folder(runs):
    # train_data and valid_data name one folder: it is listed once per run, so its warnings appear once
    skipped = [message for message in runs["listing warnings"] if message.startswith("skipping")]
    summaries = [message for message in runs["listing warnings"] if "skipped 1 of 4 files" in message]
    assert len(skipped) == len(summaries) == 1 and "notes.txt: not a video file" in skipped[0], runs["listing warnings"]
