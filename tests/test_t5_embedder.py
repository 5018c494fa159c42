"""FrozenT5Embedder against transformers' T5EncoderModel and sentencepiece run directly."""

import json
import shutil

import pytest
import sentencepiece as spm
import torch
from transformers import T5EncoderModel

from input_errors import InputError
from sgm.modules.encoders.modules import FrozenT5Embedder
from sgm.util import ConfigError
from tiny.t5 import make_tiny_t5

PROMPTS = [
    "A panda eats bamboo in a lush green forest.",
    "A red sports car drives along a winding coastal road at sunset, " * 8,  # longer than max_length tokens
    "Zebra xylophone 42!",  # characters the tiny vocabulary lacks -> <unk>
]
MAX_LENGTH = 32


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return make_tiny_t5(tmp_path_factory.mktemp("t5"), seed=0)


@pytest.fixture(scope="module")
def embedder(t5_dir):
    return FrozenT5Embedder(model_dir=str(t5_dir), max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def direct_model(t5_dir):
    return T5EncoderModel.from_pretrained(str(t5_dir), local_files_only=True, dtype=torch.float32).eval()


def spm_ids(t5_dir, text: str, max_length: int) -> list[int]:
    """The reference's slow T5Tokenizer: sentencepiece ids, truncated to leave room for </s>, then pad."""
    sp = spm.SentencePieceProcessor(model_file=str(t5_dir / "spiece.model"))
    ids = sp.encode(text)[: max_length - 1] + [1]
    return ids + [0] * (max_length - len(ids))


def test_tokens_match_sentencepiece_with_eos_padding_and_truncation(embedder, t5_dir):
    tokens = embedder.tokenize(PROMPTS)
    assert tokens.shape == (3, MAX_LENGTH)
    assert tokens.tolist() == [spm_ids(t5_dir, p, MAX_LENGTH) for p in PROMPTS]
    assert tokens[1, -1] == 1 and (tokens[1] != 0).all()  # truncated prompt: full, </s> last
    assert 2 in tokens[2].tolist()  # <unk>


@pytest.mark.parametrize(
    "text",
    ["  leading and trailing  ", "multi   space\tand\nnewline", "café über naïve", "ＦＵＬＬ width １２３", "", "emoji 🙂"],
)
def test_whitespace_and_unicode_normalised_as_sentencepiece(embedder, t5_dir, text):
    assert embedder.tokenize([text])[0].tolist() == spm_ids(t5_dir, text, MAX_LENGTH)


def test_output_equals_t5_encoder_run_directly_without_mask(embedder, direct_model, t5_dir):
    ids = torch.tensor([spm_ids(t5_dir, p, MAX_LENGTH) for p in PROMPTS])
    with torch.no_grad():
        expected = direct_model(input_ids=ids).last_hidden_state
        masked = direct_model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
        out = embedder(PROMPTS)
    assert out.shape == (3, MAX_LENGTH, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # matches the reference: no attention mask, so the padded prompts differ from a masked encoding
    assert (ids[0] == 0).any() and not torch.allclose(out[0], masked[0])
    torch.testing.assert_close(out[1], masked[1], rtol=0, atol=1e-6)  # the truncated prompt has no padding


def test_default_max_length_is_the_references_77(t5_dir):
    out = FrozenT5Embedder(model_dir=str(t5_dir))(["a cat"])
    assert out.shape == (1, 77, 32)


def test_reference_parameters_freeze_and_cache_dir(t5_dir):
    """The reference's FrozenT5Embedder(model_dir, device, max_length=77, freeze=True, cache_dir=None)."""
    positional = FrozenT5Embedder(str(t5_dir), "cpu", MAX_LENGTH, True, None)
    assert positional.max_length == MAX_LENGTH and not any(p.requires_grad for p in positional.parameters())
    trainable = FrozenT5Embedder(model_dir=str(t5_dir), max_length=MAX_LENGTH, freeze=False)
    assert all(p.requires_grad for p in trainable.parameters())  # as the reference without freeze()
    assert not trainable.training and trainable.train().transformer.training  # loaded in eval mode, trainable on demand
    assert not positional.train().transformer.training  # frozen: stays in eval mode
    with pytest.raises(ValueError, match="FrozenT5Embedder: freeze must be true or false, got 'no'"):
        FrozenT5Embedder(model_dir=str(t5_dir), freeze="no")
    with pytest.raises(ValueError, match=r"FrozenT5Embedder: cache_dir='/hf' is never read \(the reference reads it only"):
        FrozenT5Embedder(model_dir=str(t5_dir), cache_dir="/hf")


def test_frozen_and_dropout_never_active(embedder):
    assert all(not p.requires_grad for p in embedder.parameters())
    embedder.train()
    assert not embedder.training and not embedder.transformer.training
    torch.manual_seed(0)
    first = embedder(PROMPTS[:1])
    second = embedder(PROMPTS[:1])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not first.requires_grad


def test_follows_the_model_dtype(t5_dir):
    embedder = FrozenT5Embedder(model_dir=str(t5_dir), max_length=MAX_LENGTH).to(torch.bfloat16)
    assert embedder(PROMPTS[:1]).dtype == torch.bfloat16


@pytest.mark.parametrize("bad", ["a single string", [], ["ok", 3]])
def test_rejects_non_list_of_strings(embedder, bad):
    with pytest.raises(TypeError, match="list of prompt strings"):
        embedder(bad)


def test_rejects_bad_max_length(t5_dir):
    with pytest.raises(ValueError, match="max_length must be a positive integer, got 0"):
        FrozenT5Embedder(model_dir=str(t5_dir), max_length=0)


def test_missing_folder_names_path_and_layout(tmp_path):
    missing = tmp_path / "no-such-t5"
    with pytest.raises(InputError) as err:
        FrozenT5Embedder(model_dir=str(missing))
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)
    assert "spiece.model" in str(err.value) and "model.safetensors.index.json" in str(err.value)


@pytest.mark.parametrize("removed", ["config.json", "spiece.model"])
def test_missing_required_file(t5_dir, tmp_path, removed):
    folder = tmp_path / "t5"
    shutil.copytree(t5_dir, folder)
    (folder / removed).unlink()
    with pytest.raises(InputError, match=f"has no {removed}"):
        FrozenT5Embedder(model_dir=str(folder))


def test_missing_weights_and_missing_shard(t5_dir, tmp_path):
    folder = tmp_path / "t5"
    shutil.copytree(t5_dir, folder)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(InputError, match=r"names missing shard\(s\) \['model-00002-of-00002.safetensors'\]"):
        FrozenT5Embedder(model_dir=str(folder))
    (folder / "model.safetensors.index.json").unlink()
    with pytest.raises(InputError, match="has no weights"):
        FrozenT5Embedder(model_dir=str(folder))


def test_single_file_layout_loads_the_same(t5_dir, tmp_path, embedder, direct_model):
    folder = tmp_path / "t5"
    shutil.copytree(t5_dir, folder, ignore=shutil.ignore_patterns("model*.safetensors*"))
    direct_model.save_pretrained(str(folder))  # one model.safetensors (small model, no sharding)
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["d_model"] == 32
    single = FrozenT5Embedder(model_dir=str(folder), max_length=MAX_LENGTH)
    torch.testing.assert_close(single(PROMPTS), embedder(PROMPTS), rtol=0, atol=0)


def test_long_prompt_is_cut_as_the_reference_with_one_warning_giving_its_length(t5_dir):
    embedder = FrozenT5Embedder(model_dir=str(t5_dir), max_length=MAX_LENGTH)
    sp = spm.SentencePieceProcessor(model_file=str(t5_dir / "spiece.model"))
    count = len(sp.encode(PROMPTS[1])) + 1  # + </s>
    assert count > MAX_LENGTH
    with pytest.warns(UserWarning, match=rf"prompt of {count} T5 tokens is longer than max_length={MAX_LENGTH}") as caught:
        first = embedder.tokenize(PROMPTS)
        again = embedder.tokenize(PROMPTS[1:2])
    assert len([w for w in caught if "T5 tokens" in str(w.message)]) == 1
    assert first[1].tolist() == again[0].tolist() == spm_ids(t5_dir, PROMPTS[1], MAX_LENGTH)


def test_reference_device_parameter_is_where_the_token_ids_go(t5_dir, embedder):
    on_cpu = FrozenT5Embedder(model_dir=str(t5_dir), max_length=MAX_LENGTH, device="cpu")
    torch.testing.assert_close(on_cpu(PROMPTS[:1]), embedder(PROMPTS[:1]), rtol=0, atol=0)
    elsewhere = FrozenT5Embedder(model_dir=str(t5_dir), max_length=MAX_LENGTH, device="cuda")
    with pytest.raises(ConfigError, match=r"FrozenT5Embedder: device 'cuda' \(from the config\) but the T5 runs on 'cpu'"):
        elsewhere(PROMPTS[:1])
