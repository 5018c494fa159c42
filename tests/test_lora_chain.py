"""LoRA-only checkpoints and the base they record: one resolver (sat_checkpoint.lora_chain) for loading, merging
and converting; a moved base; all-or-nothing tool outputs that follow the umask."""

import os
import shutil

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from input_errors import InputError
from checkpoints.sat_checkpoint import is_lora_key, load_sat_checkpoint, save_sat_checkpoint
from test_dit_support import TinyEngine, build_tiny, tiny_network_config
from tools import convert_weight_sat2hf, merge_lora, set_lora_base
from interop import sat_to_diffusers
from interop.sat_to_diffusers import WEIGHTS_NAME


@pytest.fixture
def lora_run(tmp_path):
    """A base checkpoint, a LoRA-only checkpoint recording it (as training saves), and the full LoRA engine."""
    trained = TinyEngine(build_tiny("lora", seed=0))
    state = trained.state_dict()
    base = {k.replace(".original", ""): v for k, v in state.items() if not is_lora_key(k)}
    save_sat_checkpoint(base, tmp_path / "base", 1000)
    save_sat_checkpoint({k: v for k, v in state.items() if is_lora_key(k)}, tmp_path / "lora", 10, lora_base=tmp_path / "base")
    save_sat_checkpoint(state, tmp_path / "full", 10)  # the same LoRA model, self-contained
    yaml = tmp_path / "lora.yaml"
    OmegaConf.save({"model": {"network_config": tiny_network_config("lora")}}, yaml)
    return {"root": tmp_path, "engine": trained, "yaml": str(yaml)}


def convert(run, checkpoint: str, output: str, *extra: str) -> None:
    convert_weight_sat2hf.main(["--sat-config", run["yaml"], "--checkpoint", str(run["root"] / checkpoint),
                                "--output", str(run["root"] / output), "--merge-lora", *extra])


def test_convert_follows_the_recorded_base(lora_run):
    convert(lora_run, "lora", "from_lora", "--export-lora", str(lora_run["root"] / "peft_lora"))
    convert(lora_run, "full", "from_full", "--export-lora", str(lora_run["root"] / "peft_full"))
    for folder, name in (("from", WEIGHTS_NAME), ("peft", "pytorch_lora_weights.safetensors")):
        ours = load_file(str(lora_run["root"] / f"{folder}_lora" / name))
        expected = load_file(str(lora_run["root"] / f"{folder}_full" / name))
        assert ours.keys() == expected.keys()
        for key in expected:
            assert torch.equal(ours[key], expected[key]), key


def test_failed_conversion_writes_nothing(lora_run, monkeypatch):
    root = lora_run["root"]
    convert(lora_run, "lora", "out", "--export-lora", str(root / "peft"))
    before = {p: p.read_bytes() for p in [*(root / "out").iterdir(), *(root / "peft").iterdir()]}
    monkeypatch.setattr(sat_to_diffusers, "save_safetensors", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        convert(lora_run, "full", "out", "--export-lora", str(root / "peft"))
    assert {p: p.read_bytes() for p in [*(root / "out").iterdir(), *(root / "peft").iterdir()]} == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no temporary folder left


def test_outputs_follow_the_umask(lora_run):
    old = os.umask(0o022)
    try:
        convert(lora_run, "lora", "hf", "--export-lora", str(lora_run["root"] / "peft"))
        merge_lora.main(["--config", lora_run["yaml"], "--checkpoint", str(lora_run["root"] / "lora"),
                         "--output", str(lora_run["root"] / "merged"), "--export-lora", str(lora_run["root"] / "peft2")])
    finally:
        os.umask(old)
    root = lora_run["root"]
    for path in [root / "hf", root / "hf" / WEIGHTS_NAME, root / "hf" / "config.json",
                 root / "peft" / "pytorch_lora_weights.safetensors", root / "peft2" / "pytorch_lora_weights.safetensors",
                 root / "merged" / "latest"]:
        expected = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == expected, path


def test_merge_lora_refuses_a_loop(lora_run):
    state = lora_run["engine"].state_dict()
    loop = lora_run["root"] / "loop"
    save_sat_checkpoint({k: v for k, v in state.items() if is_lora_key(k)}, loop, 1, lora_base=loop)
    with pytest.raises(InputError, match="loops back"):
        merge_lora.main(["--config", lora_run["yaml"], "--checkpoint", str(loop), "--output", str(lora_run["root"] / "m")])
    assert not (lora_run["root"] / "m").exists()


def test_moved_base_names_the_checkpoint_and_how_to_repoint(lora_run):
    root = lora_run["root"]
    shutil.move(root / "base", root / "moved_base")
    with pytest.raises(InputError) as info:
        load_sat_checkpoint(TinyEngine(build_tiny("lora", seed=3)), root / "lora")
    assert str(info.value) == (
        f"{root / 'lora/10/mp_rank_00_model_states.pt'} records its LoRA base as {root / 'base'}, which does not "
        f"exist (moved?). Point it at the new place with: python tools/set_lora_base.py --checkpoint {root / 'lora'} "
        "--base <new base folder>"
    )
    set_lora_base.main(["--checkpoint", str(root / "lora"), "--base", str(root / "moved_base")])
    engine = TinyEngine(build_tiny("lora", seed=3))
    assert load_sat_checkpoint(engine, root / "lora") == 10
    for key, value in lora_run["engine"].state_dict().items():
        assert torch.equal(engine.state_dict()[key], value), key


def test_damaged_base_of_a_lora_run_is_one_message_naming_it(lora_run):
    """The LoRA-only file is fine, the base it records was cut short: the base file is named, for loading and merging."""
    root = lora_run["root"]
    base_file = root / "base" / "1000" / "mp_rank_00_model_states.pt"
    base_file.write_bytes(base_file.read_bytes()[:1000])
    expected = (f"{base_file} is not a torch checkpoint (truncated, or another kind of file); expected a SAT model-states "
                "file (torch.save of {'module': state_dict, ...})")
    with pytest.raises(InputError) as info:
        load_sat_checkpoint(TinyEngine(build_tiny("lora", seed=3)), root / "lora")
    assert str(info.value) == expected
    with pytest.raises(InputError) as info:
        merge_lora.main(["--config", lora_run["yaml"], "--checkpoint", str(root / "lora"), "--output", str(root / "m")])
    assert str(info.value) == expected and not (root / "m").exists()


def test_set_lora_base_names_what_it_rewrote(lora_run, capsys):
    root = lora_run["root"]
    shutil.copytree(root / "base", root / "copy_of_base")
    set_lora_base.main(["--checkpoint", str(root / "lora"), "--base", str(root / "copy_of_base")])
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {root / 'lora' / '10' / 'mp_rank_00_model_states.pt'} (base: {root / 'copy_of_base'})"]
