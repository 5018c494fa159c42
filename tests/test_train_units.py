"""Unit tests of the training package: optimizer fallback, atomic publishing, checkpoint contents, CPU shim, configs."""

import os
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from checkpoints import atomic_dir
from checkpoints.atomic_dir import clear_stale_staging, publish, staging_dir
from training.checkpoint_contents import select_contents
from sat.training import utils as sat_training_utils

from training.cpu_compat import CpuTimer, cpu_compat
from training.optimizer_config import resolve_optimizer_config

REPO = Path(__file__).resolve().parents[1]
FUSED = {"optimizer": {"type": "sat.ops.FusedEmaAdam",
                       "params": {"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 1e-4}}}


def test_fused_ema_adam_becomes_torch_adamw_on_cpu():
    with pytest.warns(UserWarning, match="AdamW"):
        config = resolve_optimizer_config(FUSED, cuda_available=False)
    assert config["optimizer"] == {"type": "AdamW", "params": {"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8,
                                                               "weight_decay": 1e-4, "torch_adam": True}}
    assert FUSED["optimizer"]["type"] == "sat.ops.FusedEmaAdam"  # input untouched


def test_optimizer_kept_with_cuda_and_incompatible_params_refused():
    assert resolve_optimizer_config(FUSED, cuda_available=True) == FUSED
    bad = {"optimizer": {"type": "sat.ops.FusedEmaAdam", "params": {"lr": 1e-3, "adam_w_mode": False}}}
    with pytest.raises(ValueError, match="adam_w_mode"):
        resolve_optimizer_config(bad, cuda_available=False)


def make_staged(save: Path, iteration: int, text: str) -> Path:
    staging = staging_dir(save, iteration)
    (staging / str(iteration)).mkdir(parents=True)
    (staging / str(iteration) / "weights").write_text(text)
    return staging


def test_publish_replaces_latest_only_after_the_folders(tmp_path, monkeypatch):
    publish(make_staged(tmp_path, 1, "one"), tmp_path, 1)
    assert (tmp_path / "latest").read_text() == "1"
    staging = make_staged(tmp_path, 2, "two")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        publish(staging, tmp_path, 2)
    monkeypatch.undo()
    assert (tmp_path / "latest").read_text() == "1" and (tmp_path / "1/weights").read_text() == "one"
    clear_stale_staging(tmp_path)
    assert not staging.exists()
    publish(make_staged(tmp_path, 1, "again"), tmp_path, 1)  # re-saving an iteration replaces its folder
    assert (tmp_path / "1/weights").read_text() == "again" and sorted(os.listdir(tmp_path)) == ["1", "latest"]


def crash_on_call(count: int, real):
    """A stand-in for `real` that raises KeyboardInterrupt on call number `count` (1-based), a simulated kill."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args)
        if len(calls) == count:
            raise KeyboardInterrupt(f"killed at call {count}")
        return real(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("can_exchange", [True, False])
@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_resaving_an_iteration_survives_a_crash_at_every_step(tmp_path, monkeypatch, can_exchange, crash_at):
    """Re-saving iteration 1 and killed at the n-th rename / removal: `latest` names a complete folder once the
    run is resumed (clear_stale_staging), holding the old or the new copy, and no staging folder is left."""
    publish(make_staged(tmp_path, 1, "one"), tmp_path, 1)
    staging = make_staged(tmp_path, 1, "again")
    if not can_exchange:
        monkeypatch.setattr(atomic_dir, "exchange", lambda *a: False)
    # with exchange: exchange, rmtree(old); without: replace(final), replace(new), rmtree(retired)
    target = "exchange" if can_exchange and crash_at == 1 else None
    if target:
        monkeypatch.setattr(atomic_dir, target, crash_on_call(1, atomic_dir.exchange))
    elif can_exchange:
        monkeypatch.setattr(atomic_dir.shutil, "rmtree", crash_on_call(crash_at - 1, shutil.rmtree))
    elif crash_at < 3:
        monkeypatch.setattr(atomic_dir.os, "replace", crash_on_call(crash_at, os.replace))
    else:
        monkeypatch.setattr(atomic_dir.shutil, "rmtree", crash_on_call(2, shutil.rmtree))  # rmtree(retired)
    with pytest.raises(KeyboardInterrupt):
        publish(staging, tmp_path, 1)
    monkeypatch.undo()
    clear_stale_staging(tmp_path)  # what a resumed run does first
    assert (tmp_path / "latest").read_text() == "1"
    assert (tmp_path / "1/weights").read_text() in ("one", "again")
    assert sorted(os.listdir(tmp_path)) == ["1", "latest"]


def test_crash_between_the_two_renames_keeps_the_old_copy(tmp_path, monkeypatch):
    """Without exchange, killed after the old folder is retired: resuming puts the old folder back."""
    publish(make_staged(tmp_path, 1, "one"), tmp_path, 1)
    monkeypatch.setattr(atomic_dir, "exchange", lambda *a: False)
    monkeypatch.setattr(atomic_dir.os, "replace", crash_on_call(2, os.replace))
    with pytest.raises(KeyboardInterrupt):
        publish(make_staged(tmp_path, 1, "again"), tmp_path, 1)
    monkeypatch.undo()
    assert not (tmp_path / "1").exists()  # the window: only a resumed run can fix it
    clear_stale_staging(tmp_path)
    assert (tmp_path / "1/weights").read_text() == "one"


def test_publish_exchanges_an_existing_folder_atomically(tmp_path, monkeypatch):
    publish(make_staged(tmp_path, 1, "one"), tmp_path, 1)
    monkeypatch.setattr(atomic_dir.os, "replace", lambda *a: pytest.fail(f"non-atomic replace {a}"))
    monkeypatch.setattr(atomic_dir, "write_text_atomically", lambda *a: None)
    publish(make_staged(tmp_path, 1, "again"), tmp_path, 1)
    assert (tmp_path / "1/weights").read_text() == "again"


def test_publish_fsyncs_the_folder_after_renames(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(atomic_dir, "fsync_dir", lambda path: events.append(("fsync", Path(path))))
    real_replace = os.replace
    monkeypatch.setattr(atomic_dir.os, "replace", lambda a, b: (events.append(("rename", Path(b))), real_replace(a, b)))
    publish(make_staged(tmp_path, 1, "one"), tmp_path, 1)
    renames = [i for i, (kind, path) in enumerate(events) if kind == "rename"]
    assert [events[i][1] for i in renames] == [tmp_path / "1", tmp_path / "latest"]
    assert events[renames[0] + 1] == ("fsync", tmp_path) and events[renames[1] + 1] == ("fsync", tmp_path)


def test_latest_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        publish(make_staged(tmp_path, 1, "one"), tmp_path, 1)
    finally:
        os.umask(old)
    assert (tmp_path / "latest").stat().st_mode & 0o777 == 0o644


class TinyLoraNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Module()
        self.model.qkv = nn.Linear(4, 4)
        self.model.matrix_A = nn.ParameterList([nn.Parameter(torch.zeros(2, 4))])
        self.model.matrix_B = nn.ParameterList([nn.Parameter(torch.zeros(4, 2))])
        self.first_stage_model = nn.Linear(4, 4)


def test_contents_lora_only_unless_base_requested_or_more_is_trained():
    net = TinyLoraNet()
    for name, param in net.named_parameters():
        param.requires_grad_(".matrix_" in f".{name}")
    assert select_contents(net, lora_save_base=False).keys == ("model.matrix_A.0", "model.matrix_B.0")
    with_base = select_contents(net, lora_save_base=True)
    assert with_base.kind == "transformer" and "model.qkv.weight" in with_base.keys
    net.model.qkv.weight.requires_grad_(True)
    assert select_contents(net, lora_save_base=False).kind == "transformer"
    assert not any(key.startswith("first_stage_model.") for key in select_contents(net, lora_save_base=False).keys)


def test_cpu_timer_measures_without_cuda():
    timer = CpuTimer("step")
    timer.start()
    timer.stop()
    assert timer.elapsed() >= 0.0
    with pytest.raises(RuntimeError, match="not started"):
        timer.stop()


def test_cpu_timer_shim_is_scoped_to_the_block():
    original = sat_training_utils.Timers.Timer
    with cpu_compat() as active:
        assert active is (not torch.cuda.is_available())
        assert (sat_training_utils.Timers.Timer is CpuTimer) is active
        sat_training_utils.Timers()("step").start()  # SAT's Timers builds the shimmed timer
    assert sat_training_utils.Timers.Timer is original
    with pytest.raises(KeyboardInterrupt), cpu_compat():
        raise KeyboardInterrupt
    assert sat_training_utils.Timers.Timer is original


def test_tiny_lora_config_differs_from_tiny_as_the_released_lora_config():
    """cogvideox_tiny_lora.yaml = cogvideox_tiny.yaml + exactly what cogvideox_2b_lora.yaml adds to cogvideox_2b.yaml."""
    def added(base: str, lora: str) -> dict:
        a, b = (OmegaConf.to_container(OmegaConf.load(REPO / p)) for p in (base, lora))
        return {"not_trainable_prefixes": b["model"]["not_trainable_prefixes"],
                "lora": b["model"]["network_config"]["params"]["modules"].pop("lora_config")["target"],
                "rest_equal": {**b["model"], "not_trainable_prefixes": None} == {**a["model"], "not_trainable_prefixes": None}}

    assert added("configs/tiny/cogvideox_tiny.yaml", "configs/tiny/cogvideox_tiny_lora.yaml") == \
        added("configs/cogvideox_2b.yaml", "configs/cogvideox_2b_lora.yaml")


@pytest.mark.parametrize("mode, expected", [
    ("finetune", "learning rate: the next 100 iterations run at 0.05x the configured lr (0.001 instead of 0.02; SAT's "
                 "fine-tuning auto-warmup, kept as the reference), then the cosine schedule"),
    ("pretrain", None),
])
def test_auto_warmup_is_announced(mode, expected):
    """SAT's scheduler as training_main builds it: 0.05x lr for the 100 iterations after the start."""
    import argparse

    from sat.training.deepspeed_training import get_learning_rate_scheduler

    from training.sat_loop import auto_warmup_notice

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)  # SAT scales each group by its lr
    args = argparse.Namespace(lr_decay_iters=None, train_iters=1000, mode=mode, warmup=0.01, lr=0.02,
                              lr_decay_style="cosine", lr_decay_ratio=0.1)
    scheduler = get_learning_rate_scheduler(optimizer, 0, args)
    assert auto_warmup_notice(scheduler) == expected
    lrs = []
    for _ in range(101):  # SAT's loop: a step at the current lr, then scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    if expected is not None:
        assert lrs[:100] == [pytest.approx(0.001)] * 100 and lrs[100] > 0.01
        assert auto_warmup_notice(scheduler) is None
