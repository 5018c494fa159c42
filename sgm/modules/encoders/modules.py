"""FrozenT5Embedder: prompts -> T5 encoder hidden states, from a local ``t5-v1_1-xxl``-style folder.

This is the module configs name as ``sgm.modules.encoders.modules.FrozenT5Embedder``; it also
re-exports ``GeneralConditioner`` so the reference's import path of that class still resolves.
"""

import warnings
from pathlib import Path
from typing import Sequence

import sentencepiece as spm
import torch
from torch import nn
from transformers import T5EncoderModel, T5Tokenizer

from input_errors import InputError
from sgm.modules.encoders.conditioner import GeneralConditioner
from sgm.util import ConfigError
from text_files import check_json_files, read_json
from checkpoints.weight_files import check_safetensors_file

__all__ = ["FrozenT5Embedder", "GeneralConditioner"]

EXPECTED_LAYOUT = """\
expected a local T5 encoder folder laid out like the released t5-v1_1-xxl:
  config.json
  spiece.model                 (sentencepiece tokenizer; tokenizer_config.json, special_tokens_map.json beside it)
  model.safetensors            or  model-0000x-of-0000y.safetensors + model.safetensors.index.json
                               or  pytorch_model.bin"""

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def check_t5_folder(model_dir: Path) -> None:
    """Raise InputError (path + expected layout) unless ``model_dir`` holds a loadable T5 encoder."""
    if not model_dir.is_dir():
        raise InputError(f"T5 folder {str(model_dir)!r} does not exist; {EXPECTED_LAYOUT}")
    for name in ("config.json", "spiece.model"):
        if not (model_dir / name).is_file():
            raise InputError(f"T5 folder {str(model_dir)!r} has no {name}; {EXPECTED_LAYOUT}")
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise InputError(
            f"T5 folder {str(model_dir)!r} has no weights (none of {list(WEIGHT_FILES)}); {EXPECTED_LAYOUT}"
        )
    check_json_files(model_dir, "a JSON file of a T5 encoder folder (config, tokenizer or weight index)")
    weights = [model_dir / "model.safetensors"]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file() and not weights[0].is_file():
        weight_map = read_json(index, "a weight index ({'weight_map': {key: shard file}})").get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(f"{index} has no 'weight_map' mapping; {EXPECTED_LAYOUT}")
        weights = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [path.name for path in weights if not path.is_file()]
        if missing:
            raise InputError(
                f"T5 folder {str(model_dir)!r}: model.safetensors.index.json names missing shard(s) {missing}; "
                f"{EXPECTED_LAYOUT}"
            )
    for path in weights:
        if path.is_file():
            check_safetensors_file(path, "the weights of a T5 encoder (safetensors)")
    try:  # the tokenizer's model: a protobuf, read in well under a millisecond
        spm.SentencePieceProcessor(model_file=str(model_dir / "spiece.model"))
    except RuntimeError:
        raise InputError(f"{model_dir / 'spiece.model'} cannot be read as a sentencepiece model (truncated, or another "
                         f"kind of file); {EXPECTED_LAYOUT}") from None


class FrozenT5Embedder(nn.Module):
    """Frozen T5 encoder: a list of b prompts -> ``last_hidden_state`` ``(b, max_length, d_model)``.

    Parameters are the reference's (``model_dir, device, max_length=77, freeze=True, cache_dir=None``; the released
    configs set ``max_length: 226``). Prompts are padded to ``max_length`` and truncated (``</s>`` kept last), as the
    reference, plus one warning per cut prompt giving its token count. ``device``: where the token ids go, as the
    reference, so it must be the T5's device (None: the T5 weights' device). ``cache_dir`` is refused (the reference
    never reads it for a configured ``model_dir``). Loaded offline, in fp32 (as the reference's transformers 4 loads
    it).

    Matches the reference: no attention mask (pad tokens are attended to); autocast disabled, so the T5 runs in its own
    dtype (half if the engine casts it).
    """

    def __init__(
        self, model_dir: str, device: str | None = None, max_length: int = 77, freeze: bool = True, cache_dir: str | None = None
    ):
        super().__init__()
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
            raise ConfigError(f"FrozenT5Embedder: max_length must be a positive integer, got {max_length!r}")
        if not isinstance(freeze, bool):
            raise ConfigError(f"FrozenT5Embedder: freeze must be true or false, got {freeze!r}")
        if cache_dir is not None:
            # Matches the reference: it passes cache_dir to from_pretrained only when model_dir is its default hub
            # name (compared with `is`, which a model_dir from a config never is), so a configured one is never read.
            raise ConfigError(f"FrozenT5Embedder: cache_dir={cache_dir!r} is never read (the reference reads it only for "
                              "its default hub model_dir; the T5 loads from the local model_dir): remove it")
        folder = Path(model_dir).expanduser().resolve()
        check_t5_folder(folder)
        self.max_length = max_length
        self.device = None if device is None else torch.device(device)
        self.warned_long_prompts: set[str] = set()
        self.tokenizer = T5Tokenizer.from_pretrained(str(folder), local_files_only=True)
        self.transformer = T5EncoderModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        self.frozen = freeze
        if freeze:  # matches the reference's freeze(): eval mode, no gradients
            self.transformer.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenT5Embedder":
        """Frozen (``freeze``, the default): always eval, the T5's dropout layers never run (``mode`` is ignored).
        ``freeze: false`` leaves the T5 trainable, as the reference (the conditioner's ``is_trainable`` decides)."""
        return super().train(mode and not self.frozen)

    def tokenize(self, text: Sequence[str]) -> torch.Tensor:
        """Token ids ``(b, max_length)``: padded with ``<pad>`` (0), truncated, ``</s>`` (1) after the text."""
        if isinstance(text, str) or not text or not all(isinstance(t, str) for t in text):
            raise TypeError(f"FrozenT5Embedder: expected a non-empty list of prompt strings, got {text!r}")
        self.warn_long_prompts(text)
        batch_encoding = self.tokenizer(
            list(text),
            truncation=True,
            max_length=self.max_length,
            padding="max_length",
            return_tensors="pt",
        )
        return batch_encoding["input_ids"]

    def warn_long_prompts(self, text: Sequence[str]) -> None:
        """One warning per prompt (per embedder) that tokenizes to more than ``max_length`` tokens."""
        for prompt in text:
            if prompt in self.warned_long_prompts:
                continue
            count = len(self.tokenizer(prompt)["input_ids"])  # with the closing </s>
            if count > self.max_length:
                self.warned_long_prompts.add(prompt)
                warnings.warn(
                    f"prompt of {count} T5 tokens is longer than max_length={self.max_length}: only its first "
                    f"{self.max_length - 1} tokens (+ </s>) are used, as in the reference: {prompt[:80]!r}...",
                    stacklevel=2,
                )

    def forward(self, text: Sequence[str]) -> torch.Tensor:
        """Encode b prompts -> ``(b, max_length, d_model)`` on the T5's device, in the T5's dtype."""
        if self.device is not None and self.device != self.transformer.device:
            raise ConfigError(f"FrozenT5Embedder: device {str(self.device)!r} (from the config) but the T5 runs on "
                              f"{str(self.transformer.device)!r}; set device to that or remove the key")
        tokens = self.tokenize(text).to(self.transformer.device)  # (b, max_length)
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            hidden = self.transformer(input_ids=tokens).last_hidden_state  # (b, max_length, d_model)
        return hidden
