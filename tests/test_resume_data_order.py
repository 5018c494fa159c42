"""A run killed and resumed from its last checkpoint continues the data order: on a 6-video dataset its losses
after the checkpoint equal the uninterrupted run's, from the videos and from their latent cache."""

import shutil

import pytest
import torch

from cache_runs import LossRecorder, make_cache, train
from tiny.videos import write_dataset
from checkpoints.sat_checkpoint import checkpoint_path, read_checkpoint_states
from test_train_finetune import LORA_MODEL, MODEL, weights_config
from test_train_from_cache import assert_close_relative
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # DeepSpeed training runs

VIDEOS, STEPS, SAVED_AT = 6, 4, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_order")
    make_tiny_weights(MODEL, str(root / "weights"), seed=0)
    data = write_dataset(root / "data", VIDEOS)
    paths = weights_config(root, root / "paths.yaml")
    return {"root": root, "paths": paths, "data": str(data),
            "cache": str(make_cache(LORA_MODEL, paths, data, root / "cache"))}


@pytest.mark.parametrize("source", ["data", "cache"])
def test_resumed_run_continues_the_data_order(setup, source, monkeypatch):
    root, recorder = setup["root"], LossRecorder(monkeypatch)
    _, straight = train(root, setup["paths"], f"straight-{source}", LORA_MODEL, [setup[source]], train_iters=STEPS,
                        save_interval=SAVED_AT)
    straight_losses = recorder.take()
    killed = root / f"killed-{source}"  # what a run killed after its checkpoint at SAVED_AT leaves
    shutil.copytree(straight / str(SAVED_AT), killed / str(SAVED_AT))
    (killed / "latest").write_text(str(SAVED_AT))
    _, new_folder = train(root, setup["paths"], f"resumed-{source}", LORA_MODEL, [setup[source]], train_iters=STEPS,
                          load=str(killed))
    assert_close_relative(recorder.take(), straight_losses[SAVED_AT:])
    assert new_folder is None and (killed / "latest").read_text() == str(STEPS)  # one run, one folder
    resumed = killed
    a = read_checkpoint_states(checkpoint_path(straight)[0])["module"]
    b = read_checkpoint_states(checkpoint_path(resumed)[0])["module"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-6, atol=1e-7)
