"""A damaged JSON, YAML or safetensors file anywhere the project reads one is one `error:` line (exit status 2) naming
the file, and for text files the line and column: through each reader (`text_files`, `weight_files`) and each place
that reads such a file."""

import shutil

import pytest
import torch

from input_errors import InputError
from latent_cache.manifest import MANIFEST_NAME, read_manifest
from checkpoints.sat_checkpoint import LORA_BASE_KEY, save_sat_checkpoint
from sgm.modules.encoders.modules import check_t5_folder
from test_tool_entry_points import run_tool
from text_files import read_json, read_yaml
from tools.export_diffusers_pipeline import copy_t5
from training.checkpoint_io import TRAINING_STATE_NAME

BROKEN_JSON = '{\n  "num_layers": 2,\n}\n'  # a trailing comma
JSON_PROBLEM = "is not valid JSON (line 3, column 1: Expecting property name enclosed in double quotes)"


def test_the_json_reader_names_file_line_and_column(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(BROKEN_JSON)
    with pytest.raises(InputError) as caught:
        read_json(path, "a test file")
    assert str(caught.value) == f"{path} {JSON_PROBLEM}; expected a test file"
    path.write_bytes(b'{"a":\n "caf\xe9"}')
    with pytest.raises(InputError, match=rf"^{path} is not UTF-8 text \(line 2, column 6: byte 0xe9\); expected a test"):
        read_json(path, "a test file")
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=rf"^{path} holds a JSON list, not an object; expected a test file"):
        read_json(path, "a test file")


def test_the_yaml_reader_names_file_line_and_column(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("model:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(InputError, match=rf"^config file {path}, line 3, column 4: not valid YAML: did not find "
                                         r"expected ',' or '\]' \(while parsing a flow sequence at line 2, column 6\)"):
        read_yaml(path)
    path.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(InputError, match=rf"^{path} is not UTF-8 text \(line 1, column 7: byte 0xe9\)"):
        read_yaml(path)


PIPELINE_JSONS = ("model_index.json", "vae/config.json", "scheduler/scheduler_config.json", "transformer/config.json",
                  "text_encoder/config.json", "tokenizer/tokenizer_config.json")


@pytest.mark.parametrize("part", PIPELINE_JSONS)
def test_a_damaged_pipeline_json_is_one_line(monkeypatch, capsys, tmp_path, part):
    """The importer reads every JSON of the folder before any weight; the issue's example: transformer/config.json."""
    pipe = tmp_path / "pipe"
    for name in PIPELINE_JSONS:
        (pipe / name).parent.mkdir(parents=True, exist_ok=True)
        (pipe / name).write_text(BROKEN_JSON if name == part else "{}")
    line = run_tool(monkeypatch, capsys, "tools/import_diffusers_pipeline.py", str(pipe), "--output", str(tmp_path / "o"))
    folder = part.split("/")[0]
    expected = (f"a JSON file of a diffusers pipeline's {folder}/" if folder in ("text_encoder", "tokenizer") else
                f"the {part} of a diffusers pipeline folder")
    assert line.startswith(f"error: {pipe / part} {JSON_PROBLEM}; expected {expected}")


def test_a_damaged_vae_config_is_one_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(BROKEN_JSON)
    line = run_tool(monkeypatch, capsys, "tools/convert_vae.py", "to-sat", str(tmp_path / "vae"), str(tmp_path / "v.pt"))
    assert line.startswith(f"error: {tmp_path / 'vae' / 'config.json'} {JSON_PROBLEM}; expected a diffusers Autoencoder")


def test_a_damaged_weight_index_is_one_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "hf" / "diffusion_pytorch_model.safetensors.index.json").write_text(BROKEN_JSON)
    line = run_tool(monkeypatch, capsys, "tools/convert_weight_hf2sat.py", "--diffusers", str(tmp_path / "hf"),
                    "--output", str(tmp_path / "o"))
    assert line.startswith(f"error: {tmp_path / 'hf' / 'diffusion_pytorch_model.safetensors.index.json'} {JSON_PROBLEM}")


def test_a_damaged_base_yaml_of_an_export_is_one_line(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "model.yaml"
    bad.write_text("model:\n  scale_factor: [1\n")
    line = run_tool(monkeypatch, capsys, "tools/export_diffusers_pipeline.py", "--base", str(bad), "--checkpoint",
                    str(tmp_path), "--output", str(tmp_path / "o"))
    assert line.startswith(f"error: config file {bad}, line 3, column 1: not valid YAML")


def damage_json(path):
    path.write_text(BROKEN_JSON)
    return f"{path} {JSON_PROBLEM}"


def truncate(path):
    path.write_bytes(path.read_bytes()[:-100])
    return f"{path} is not a complete safetensors file (its tensors need "


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"{path} cannot be read as a sentencepiece model (truncated, or another kind of file)"


@pytest.mark.parametrize("name, damage", [
    ("config.json", damage_json),
    ("tokenizer_config.json", damage_json),
    ("special_tokens_map.json", damage_json),
    ("added_tokens.json", damage_json),
    ("model.safetensors.index.json", damage_json),
    ("model-00002-of-00002.safetensors", truncate),
    ("spiece.model", cut_in_half),
])
def test_a_damaged_t5_file_is_one_message_before_the_build(tiny_models, tmp_path, name, damage):
    """check_t5_folder runs before the model is built (sampling's check_inputs, and the embedder itself)."""
    folder = tmp_path / "t5"
    shutil.copytree(tiny_models.t5, folder)
    expected = damage(folder / name)
    with pytest.raises(InputError) as caught:
        check_t5_folder(folder)
    assert str(caught.value).startswith(expected)


def test_a_damaged_tokenizer_config_on_export_is_one_message(tmp_path):
    (tmp_path / "t5").mkdir()
    expected = damage_json(tmp_path / "t5" / "tokenizer_config.json")
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError) as caught:
        copy_t5(tmp_path / "t5", tmp_path / "out")
    assert str(caught.value).startswith(expected.replace(str(tmp_path / "t5"), str(tmp_path / "out" / "tokenizer")))


def test_a_damaged_cache_manifest_is_one_message(tmp_path):
    expected = damage_json(tmp_path / MANIFEST_NAME)
    with pytest.raises(InputError) as caught:
        read_manifest(tmp_path)
    assert str(caught.value) == f"{expected}; expected a latent cache manifest (tools/precompute.py writes it)"


def test_a_damaged_training_state_changes_nothing(monkeypatch, capsys, tmp_path):
    """set_lora_base reads training_state.json before it rewrites anything."""
    base = tmp_path / "base"
    save_sat_checkpoint({"w": torch.zeros(1)}, base, 1)
    lora = tmp_path / "lora"
    written = save_sat_checkpoint({"w.matrix_A.0": torch.zeros(1)}, lora, 2, lora_base=base)
    expected = damage_json(written.parent / TRAINING_STATE_NAME)
    before = written.read_bytes()
    line = run_tool(monkeypatch, capsys, "tools/set_lora_base.py", "--checkpoint", str(lora), "--base", str(base))
    assert line.startswith(f"error: {expected}; expected the {TRAINING_STATE_NAME} a fine-tuning run writes")
    assert written.read_bytes() == before
    assert torch.load(written)[LORA_BASE_KEY] == str(base)
