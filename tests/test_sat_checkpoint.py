"""SAT-layout checkpoints: save/load round trip, atomic saves, clear errors, LoRA-only on top of a base."""

import random

import numpy as np
import pytest
import torch

from checkpoints import sat_checkpoint
from input_errors import InputError
from checkpoints.sat_checkpoint import (
    LORA_BASE_KEY,
    MODEL_STATES_NAME,
    is_lora_key,
    load_sat_checkpoint,
    save_sat_checkpoint,
)
from test_dit_support import TinyEngine, build_tiny, tiny_inputs


def output_of(engine: TinyEngine) -> torch.Tensor:
    with torch.no_grad():
        return engine.model.diffusion_model(*tiny_inputs())


def test_round_trip_restores_the_network(tmp_path):
    source = TinyEngine(build_tiny(seed=0))
    path = save_sat_checkpoint(source.state_dict(), tmp_path, 250)
    assert path == tmp_path / "250" / MODEL_STATES_NAME
    assert (tmp_path / "latest").read_text() == "250"
    target = TinyEngine(build_tiny(seed=1))
    assert not torch.equal(output_of(source), output_of(target))
    assert load_sat_checkpoint(target, tmp_path) == 250
    assert torch.equal(output_of(source), output_of(target))


def test_an_iteration_folder_loads_that_iteration(tmp_path):
    """`--load RUN/40` (what a file browser picks) loads iteration 40, whatever `latest` names."""
    first, second = TinyEngine(build_tiny(seed=0)), TinyEngine(build_tiny(seed=1))
    save_sat_checkpoint(first.state_dict(), tmp_path, 40)
    save_sat_checkpoint(second.state_dict(), tmp_path, 80)
    assert sat_checkpoint.checkpoint_path(tmp_path / "40") == (tmp_path / "40" / MODEL_STATES_NAME, 40)
    target = TinyEngine(build_tiny(seed=2))
    assert load_sat_checkpoint(target, tmp_path / "40") == 40
    assert torch.equal(output_of(first), output_of(target))
    assert load_sat_checkpoint(target, tmp_path) == 80
    assert torch.equal(output_of(second), output_of(target))


def test_missing_conditioner_keys_are_expected(tmp_path):
    source = TinyEngine(build_tiny())
    dit_only = {k: v for k, v in source.state_dict().items() if k.startswith("model.")}
    save_sat_checkpoint(dit_only, tmp_path, 1)
    load_sat_checkpoint(TinyEngine(build_tiny(seed=2)), tmp_path)
    with pytest.raises(InputError, match="conditioner.weight"):
        load_sat_checkpoint(TinyEngine(build_tiny(seed=2)), tmp_path, expected_missing_prefixes=())


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = TinyEngine(build_tiny()).state_dict()
    state.pop("model.diffusion_model.time_embed.2.bias")
    save_sat_checkpoint(state, tmp_path / "missing", 1)
    with pytest.raises(InputError, match=r"model\.diffusion_model\.time_embed\.2\.bias"):
        load_sat_checkpoint(TinyEngine(build_tiny()), tmp_path / "missing")
    state = TinyEngine(build_tiny()).state_dict()
    state["model.diffusion_model.mixins.stray.weight"] = torch.zeros(2)
    save_sat_checkpoint(state, tmp_path / "extra", 1)
    with pytest.raises(InputError, match=r"unexpected.*mixins\.stray\.weight"):
        load_sat_checkpoint(TinyEngine(build_tiny()), tmp_path / "extra")


def test_layout_errors_name_the_path(tmp_path):
    engine = TinyEngine(build_tiny())
    with pytest.raises(InputError, match="nowhere.*latest"):
        load_sat_checkpoint(engine, tmp_path / "nowhere")
    with pytest.raises(InputError, match="latest"):
        load_sat_checkpoint(engine, tmp_path)
    (tmp_path / "latest").write_text("12")
    with pytest.raises(InputError, match=f"12/{MODEL_STATES_NAME}"):
        load_sat_checkpoint(engine, tmp_path)
    (tmp_path / "latest").write_text("twelve")
    with pytest.raises(InputError, match="'twelve'"):
        load_sat_checkpoint(engine, tmp_path)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first = TinyEngine(build_tiny(seed=0))
    save_sat_checkpoint(first.state_dict(), tmp_path, 1)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sat_checkpoint.torch, "save", crash)
    with pytest.raises(OSError):
        save_sat_checkpoint(TinyEngine(build_tiny(seed=3)).state_dict(), tmp_path, 2)
    monkeypatch.undo()
    assert (tmp_path / "latest").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "latest"]  # no partial folder left
    target = TinyEngine(build_tiny(seed=4))
    assert load_sat_checkpoint(target, tmp_path) == 1
    assert torch.equal(output_of(first), output_of(target))


def test_resaving_an_iteration_replaces_it(tmp_path):
    save_sat_checkpoint(TinyEngine(build_tiny(seed=0)).state_dict(), tmp_path, 5)
    newer = TinyEngine(build_tiny(seed=6))
    save_sat_checkpoint(newer.state_dict(), tmp_path, 5)
    target = TinyEngine(build_tiny(seed=0))
    load_sat_checkpoint(target, tmp_path)
    assert torch.equal(output_of(newer), output_of(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["5", "latest"]


def test_sat_training_file_with_numpy_rng_state_loads(tmp_path):
    """SAT training pickles numpy RNG state; torch>=2.6 weights_only refuses it unless allow-listed."""
    source = TinyEngine(build_tiny())
    (tmp_path / "9").mkdir()
    torch.save(
        {"module": source.state_dict(), "np_rng_state": np.random.get_state(), "random_rng_state": random.getstate()},
        tmp_path / "9" / MODEL_STATES_NAME,
    )
    (tmp_path / "latest").write_text("9")
    assert load_sat_checkpoint(TinyEngine(build_tiny(seed=1)), tmp_path) == 9


def test_lora_only_checkpoint_loads_its_base_first(tmp_path):
    trained = TinyEngine(build_tiny("lora", seed=0))  # base + randomised LoRA matrices
    base = {k.replace(".original", ""): v for k, v in trained.state_dict().items() if not is_lora_key(k)}
    lora = {k: v for k, v in trained.state_dict().items() if is_lora_key(k)}
    save_sat_checkpoint(base, tmp_path / "base", 1000)
    save_sat_checkpoint(lora, tmp_path / "lora", 10, lora_base=tmp_path / "base")
    assert sat_checkpoint.read_checkpoint_states(tmp_path / "lora" / "10" / MODEL_STATES_NAME)[LORA_BASE_KEY] == str(tmp_path / "base")

    engine = TinyEngine(build_tiny("lora", seed=7))
    assert load_sat_checkpoint(engine, tmp_path / "lora") == 10
    assert torch.equal(output_of(engine), output_of(trained))


def test_lora_model_needs_its_matrices_unless_allowed(tmp_path):
    trained = TinyEngine(build_tiny("lora", seed=0))
    base = {k.replace(".original", ""): v for k, v in trained.state_dict().items() if not is_lora_key(k)}
    save_sat_checkpoint(base, tmp_path / "base", 1000)
    with pytest.raises(InputError, match=r"missing.*matrix_A\.0"):
        load_sat_checkpoint(TinyEngine(build_tiny("lora")), tmp_path / "base")
    fresh = TinyEngine(build_tiny("lora", seed=7))
    matrix = fresh.state_dict()["model.diffusion_model.transformer.layers.0.attention.dense.matrix_B.0"].clone()
    load_sat_checkpoint(fresh, tmp_path / "base", allow_missing_lora=True)  # a LoRA fine-tune's start
    assert torch.equal(fresh.state_dict()["model.diffusion_model.transformer.layers.0.attention.dense.matrix_B.0"], matrix)
    assert torch.equal(fresh.state_dict()["model.diffusion_model.time_embed.0.weight"], base["model.diffusion_model.time_embed.0.weight"])


def test_bad_lora_only_checkpoints_are_refused(tmp_path):
    trained = TinyEngine(build_tiny("lora", seed=0))
    lora = {k: v for k, v in trained.state_dict().items() if is_lora_key(k)}
    save_sat_checkpoint(lora, tmp_path / "orphan", 1)
    with pytest.raises(InputError, match="only LoRA matrices"):
        load_sat_checkpoint(TinyEngine(build_tiny("lora")), tmp_path / "orphan")
    with pytest.raises(ValueError, match="lora_base is only for LoRA-only"):
        save_sat_checkpoint(trained.state_dict(), tmp_path / "wrong", 1, lora_base=tmp_path / "orphan")
    save_sat_checkpoint({k.replace(".original", ""): v for k, v in trained.state_dict().items() if not is_lora_key(k)}, tmp_path / "base", 1)
    partial = dict(lora)
    partial.pop("model.diffusion_model.transformer.layers.1.attention.dense.matrix_B.0")
    save_sat_checkpoint(partial, tmp_path / "partial", 1, lora_base=tmp_path / "base")
    with pytest.raises(InputError, match=r"layers\.1\.attention\.dense\.matrix_B\.0"):
        load_sat_checkpoint(TinyEngine(build_tiny("lora")), tmp_path / "partial")
    save_sat_checkpoint(lora, tmp_path / "loop", 1, lora_base=tmp_path / "loop")
    with pytest.raises(InputError, match="loops back"):
        load_sat_checkpoint(TinyEngine(build_tiny("lora")), tmp_path / "loop")


def damaged_copies(path, folder):
    """(name, copy of `path`) for: an empty file, the file cut in half, and a text file in its place."""
    data = path.read_bytes()
    copies = {"empty": b"", "truncated": data[: len(data) // 2], "text": b"not a checkpoint\n"}
    for name, content in copies.items():
        (folder / name).mkdir(parents=True)
        (folder / name / path.name).write_bytes(content)
    return {name: folder / name / path.name for name in copies}


@pytest.mark.parametrize("damage, message", [("empty", "is empty"), ("truncated", "is not a torch checkpoint"),
                                             ("text", "is not a torch checkpoint")])
def test_damaged_model_states_file_is_one_message_naming_it(tmp_path, damage, message):
    """Found by checkpoint_path (what sample_video and training run before building the model) and by the loader."""
    good = save_sat_checkpoint(TinyEngine(build_tiny()).state_dict(), tmp_path / "good", 1)
    bad = damaged_copies(good, tmp_path / "bad")[damage]
    (tmp_path / "run" / "1").mkdir(parents=True)
    (tmp_path / "run" / "latest").write_text("1")
    (tmp_path / "run" / "1" / MODEL_STATES_NAME).write_bytes(bad.read_bytes())
    expected = f"{tmp_path / 'run/1' / MODEL_STATES_NAME} {message} (truncated, or another kind of file); " \
        if damage != "empty" else f"{tmp_path / 'run/1' / MODEL_STATES_NAME} is empty; "
    for call in (lambda: sat_checkpoint.checkpoint_path(tmp_path / "run"),
                 lambda: load_sat_checkpoint(TinyEngine(build_tiny()), tmp_path / "run"),
                 lambda: sat_checkpoint.read_checkpoint_states(bad)):
        with pytest.raises(InputError) as info:
            call()
        assert str(info.value).replace(str(bad), str(tmp_path / "run/1" / MODEL_STATES_NAME)).startswith(expected)
        assert str(info.value).endswith("expected a SAT model-states file (torch.save of {'module': state_dict, ...})")


def test_damaged_member_inside_the_archive_is_one_message(tmp_path):
    good = save_sat_checkpoint(TinyEngine(build_tiny()).state_dict(), tmp_path, 1)
    data = bytearray(good.read_bytes())
    start = data.index(b"data.pkl") + 40  # inside the pickle, the directory at the end intact
    data[start : start + 64] = b"\xff" * 64
    good.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"^{good} cannot be (read safely|read as a torch checkpoint) \(.*\); expected a SAT"):
        load_sat_checkpoint(TinyEngine(build_tiny()), tmp_path)


def test_rotary_checkpoint_without_its_tables_loads_them_recomputed_with_a_notice(tmp_path):
    """Files of older conversions lack freqs_sin / freqs_cos: as the reference's non-strict load, the tables the
    model computed from its config stay, and the model equals one loaded with the tables in the file."""
    source = TinyEngine(build_tiny("rotary", seed=0))
    state = {k: v for k, v in source.state_dict().items() if not k.endswith(("freqs_sin", "freqs_cos"))}
    save_sat_checkpoint(state, tmp_path, 1)
    target = TinyEngine(build_tiny("rotary", seed=4))
    with pytest.warns(UserWarning) as caught:
        load_sat_checkpoint(target, tmp_path)
    (notice,) = [str(w.message) for w in caught if "rotary tables" in str(w.message)]
    assert notice == (f"{tmp_path / '1' / MODEL_STATES_NAME} has no rotary tables ['freqs_sin', 'freqs_cos'] (written "
                      "by an older conversion): using the ones computed from the config, as the reference's non-strict "
                      "loader does")
    assert torch.equal(output_of(source), output_of(target))
