"""tiny/t5.py (and its command line tools/tiny_t5.py) writes a deterministic tiny T5 encoder folder in the released layout."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file
from transformers import T5Config, T5EncoderModel

from tiny.t5 import SHARD_NAMES, make_tiny_t5

REPO = Path(__file__).resolve().parents[1]
RELEASED_FILES = {
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "spiece.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
}


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for shard in SHARD_NAMES for k, v in load_file(str(folder / shard)).items()}


def test_same_seed_gives_identical_files_and_global_rng_untouched(tmp_path):
    rng_before = torch.get_rng_state()
    a = make_tiny_t5(tmp_path / "a", seed=3)
    b = make_tiny_t5(tmp_path / "b", seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert {p.name for p in a.iterdir()} == RELEASED_FILES
    for name in RELEASED_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_different_seed_gives_different_weights_same_tokenizer(tmp_path):
    a = make_tiny_t5(tmp_path / "a", seed=0)
    b = make_tiny_t5(tmp_path / "b", seed=1)
    wa, wb = load_weights(a), load_weights(b)
    assert wa.keys() == wb.keys()
    assert not torch.equal(wa["shared.weight"], wb["shared.weight"])
    assert (a / "spiece.model").read_bytes() == (b / "spiece.model").read_bytes()


def test_sharded_layout_matches_the_model(tmp_path):
    folder = make_tiny_t5(tmp_path / "t5")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    weights = load_weights(folder)
    assert sorted(set(index["weight_map"].values())) == list(SHARD_NAMES)
    assert index["weight_map"].keys() == weights.keys()
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in weights.values())
    config = json.loads((folder / "config.json").read_text())
    sizes = (config["d_model"], config["num_layers"], config["num_heads"], config["d_kv"], config["d_ff"])
    assert sizes == (32, 2, 2, 16, 64)
    assert config["feed_forward_proj"] == "gated-gelu"
    with torch.device("meta"):
        model_keys = set(T5EncoderModel(T5Config(**config)).state_dict())
    # the tied input embedding is stored once, as shared.weight
    assert model_keys - set(weights) == {"encoder.embed_tokens.weight"}
    assert set(weights) <= model_keys


def test_tokenizer_uses_t5_special_ids(tmp_path):
    folder = make_tiny_t5(tmp_path / "t5")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert sp.get_piece_size() == 256
    added = json.loads((folder / "added_tokens.json").read_text())
    assert added["<extra_id_0>"] == 355 and added["<extra_id_99>"] == 256


@pytest.mark.slow
def test_cli_writes_the_same_folder(tmp_path):
    make_tiny_t5(tmp_path / "api", seed=0)
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "tiny_t5.py"), str(tmp_path / "cli"), "--seed", "0"],
        check=True, cwd=REPO, capture_output=True,
    )
    for name in RELEASED_FILES:
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name


@pytest.mark.parametrize("seed", [0, 7])
def test_weights_load_into_transformers_unchanged(tmp_path, seed):
    folder = make_tiny_t5(tmp_path / "t5", seed=seed)
    model = T5EncoderModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    state = model.state_dict()
    for name, tensor in load_weights(folder).items():
        assert torch.equal(state[name], tensor), name
    assert torch.equal(state["encoder.embed_tokens.weight"], state["shared.weight"])
