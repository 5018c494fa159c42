"""The EMA checkpoint of sat.ops.FusedEmaAdam (`<iteration>-ema/`), checked on the CPU through train_video.py's
ZeRO-2 loop with a stand-in optimizer of the same state layout (tests/ema_adam_standin.py)."""

import copy

import pytest
import sat.ops
import torch

import train_video
from benchmarks.gpu_check_train import ema_view
from ema_adam_standin import FusedEmaAdam
from checkpoints.sat_checkpoint import LORA_BASE_KEY, load_sat_checkpoint, read_checkpoint_states
from test_train_finetune import LORA_MODEL, tiny, train  # noqa: F401  (tiny is a fixture)
from training import sat_loop

pytestmark = pytest.mark.slow  # a DeepSpeed training run


def shadow_by_name(model, optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's EMA ('shadow' of ZeRO's flat fp32 partition), cut back into the named parameters."""
    shadow = optimizer.optimizer.state[optimizer.single_partition_of_fp32_groups[0]]["shadow"]
    names = {id(param): name for name, param in model.module.named_parameters()}
    found, offset = {}, 0
    for param in optimizer.bit16_groups[0]:  # the flat partition's order
        found[names[id(param)]] = shadow[offset:offset + param.numel()].view_as(param).clone()
        offset += param.numel()
    return found


def test_ema_checkpoint_holds_the_optimizers_ema_and_training_keeps_its_weights(tiny, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setattr(sat.ops, "FusedEmaAdam", FusedEmaAdam)
    monkeypatch.setattr(train_video, "resolve_optimizer_config", lambda config, cuda_available: copy.deepcopy(config))
    seen = {}
    save = sat_loop.save_training_checkpoint

    def observed_save(iteration, model, optimizer, lr_scheduler, args, options):
        seen["ema"] = shadow_by_name(model, optimizer)
        save(iteration, model, optimizer, lr_scheduler, args, options)
        seen["after"] = {name: p.detach().clone() for name, p in model.module.named_parameters() if p.requires_grad}

    monkeypatch.setattr(sat_loop, "save_training_checkpoint", observed_save)
    engine, folder = train(tiny, "ema", LORA_MODEL, lr=1.0, train_iters=3, save_interval=3)

    weights = read_checkpoint_states(folder / "3" / "mp_rank_00_model_states.pt")
    ema = read_checkpoint_states(folder / "3-ema" / "mp_rank_00_model_states.pt")
    assert set(ema["module"]) == set(weights["module"]) == set(seen["ema"]) and len(ema["module"]) == 16
    assert ema[LORA_BASE_KEY] == weights[LORA_BASE_KEY]
    for key, value in ema["module"].items():
        assert torch.equal(value, seen["ema"][key]), key
        assert torch.equal(weights["module"][key], seen["after"][key]), key  # weights restored after the EMA save
        assert torch.equal(engine.state_dict()[key], weights["module"][key]), key
    assert any(not torch.equal(ema["module"][k], weights["module"][k]) for k in ema["module"] if ".matrix_B." in k)

    load_sat_checkpoint(engine, ema_view(folder, 3, tmp_path))
    for key, value in ema["module"].items():
        assert torch.equal(engine.state_dict()[key], value), key
