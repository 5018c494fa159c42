"""Write a tiny random T5 encoder folder in the layout of the released ``t5-v1_1-xxl`` folder.

The folder holds exactly what ``FrozenT5Embedder`` loads from the real one::

    <out_dir>/
        config.json                          T5 v1.1 config (gated-gelu), d_model 32
        model-00001-of-00002.safetensors     weights, split in two shards
        model-00002-of-00002.safetensors
        model.safetensors.index.json         {"metadata": {"total_size"}, "weight_map"}
        spiece.model                         sentencepiece unigram model trained here
        tokenizer_config.json, special_tokens_map.json, added_tokens.json

Everything is deterministic: the tokenizer is trained single-threaded on the embedded text below,
and the weights are drawn from a ``torch.Generator`` seeded with ``seed`` (the global RNG is not
touched), so one seed always gives byte-identical files.

Command line: ``python tools/tiny_t5.py OUT_DIR --seed 0``
"""

import io
import json
import math
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

# A small English corpus in the style of video prompts; the tokenizer is trained on it.
CORPUS = """\
A golden retriever runs across a sunny meadow, its ears flapping in the wind.
A red sports car drives along a winding coastal road at sunset.
Waves crash against black rocks while seagulls circle overhead.
A little girl in a yellow raincoat jumps into a puddle on a rainy street.
An old man plays the violin in a quiet park surrounded by autumn leaves.
A panda eats bamboo in a lush green forest, light filtering through the trees.
A time lapse of clouds drifting over snowy mountain peaks.
A chef slices fresh vegetables on a wooden cutting board in a busy kitchen.
A cat sleeps on a windowsill as the morning sun warms the room.
Fireworks burst above a city skyline reflected in a calm river.
A astronaut floats slowly inside a space station, looking out at the blue earth.
Two friends laugh while riding bicycles down a tree lined avenue.
A hummingbird hovers near a bright red flower, wings moving very fast.
A steaming cup of coffee sits on a table next to an open book.
A train crosses a long stone bridge over a deep green valley.
Children build a sandcastle on the beach while the tide comes in.
A dancer spins gracefully on a dark stage under a single spotlight.
Snow falls gently on a small wooden cabin in the middle of the woods.
A horse gallops through shallow water, splashing drops in every direction.
Colorful hot air balloons rise into the clear morning sky over the desert.
A robot walks through a neon lit street at night in the rain.
A boat sails across a lake surrounded by tall pine trees and mountains.
The camera pans slowly over a field of sunflowers swaying in the breeze.
A small turtle swims above a coral reef full of bright fish.
A woman paints a landscape on a large canvas in a sunlit studio.
Lightning strikes in the distance as a storm moves over the plains.
A close up of raindrops sliding down a glass window at dusk.
A fox walks carefully through fresh snow, leaving small footprints behind.
People walk through a crowded market filled with fruit, spices and flowers.
An eagle soars high above a canyon, its shadow moving across the red rocks.
"""

SPM_VOCAB_SIZE = 256  # sentencepiece pieces, <pad> </s> <unk> included
EXTRA_IDS = 100  # T5 sentinel tokens <extra_id_0..99> appended after the sentencepiece vocab
CONFIG_VOCAB_SIZE = 384  # embedding rows: SPM_VOCAB_SIZE + EXTRA_IDS rounded up to 128, as 32000 + 100 -> 32128
MODEL_MAX_LENGTH = 226

# config.json, with the fields of the released t5-v1_1-xxl config.json (values shrunk).
T5_CONFIG = {
    "architectures": ["T5EncoderModel"],
    "d_ff": 64,
    "d_kv": 16,
    "d_model": 32,  # = the tiny DiT's text_hidden_size
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "t5",
    "num_decoder_layers": 2,
    "num_heads": 2,
    "num_layers": 2,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": CONFIG_VOCAB_SIZE,
}

SHARD_NAMES = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def train_tokenizer() -> bytes:
    """Train a sentencepiece unigram model on ``CORPUS`` with T5's ids (pad 0, eos 1, unk 2, no bos)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()),
        model_writer=model,
        model_type="unigram",
        vocab_size=SPM_VOCAB_SIZE,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def tokenizer_files() -> dict[str, dict]:
    """The json side files of the released tokenizer folder, for a ``SPM_VOCAB_SIZE`` vocabulary."""
    sentinels = [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    tokenizer_config = {
        "additional_special_tokens": sentinels,
        "extra_ids": EXTRA_IDS,
        "legacy": True,
        "model_max_length": MODEL_MAX_LENGTH,
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        **special,
    }
    return {
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": {"additional_special_tokens": sentinels, **special},
        # sentinels count down from the end of the vocabulary: <extra_id_0> is the last id
        "added_tokens.json": {s: SPM_VOCAB_SIZE + EXTRA_IDS - 1 - i for i, s in enumerate(sentinels)},
    }


def random_state_dict(config: T5Config, seed: int) -> dict[str, torch.Tensor]:
    """Random T5 encoder weights drawn from a private generator, in the model's key order.

    Linear weights ~ N(0, 1/fan_in), embeddings and relative position biases ~ N(0, 1),
    layer norm scales ~ 1 + N(0, 0.1^2). ``encoder.embed_tokens.weight`` is tied to ``shared.weight``
    and stored once, as ``shared.weight`` (as transformers' ``save_pretrained`` does).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # key names and shapes only: no memory, no draw from the global RNG
        names_shapes = [(k, v.shape) for k, v in T5EncoderModel(config).state_dict().items()]
    state = {}
    for name, shape in names_shapes:
        if name == "encoder.embed_tokens.weight":
            continue
        noise = torch.randn(shape, generator=generator)
        if "layer_norm" in name:
            state[name] = 1.0 + 0.1 * noise
        elif name == "shared.weight" or "relative_attention_bias" in name:
            state[name] = noise
        else:
            state[name] = noise / math.sqrt(shape[1])
    return state


def write_shards(state: dict[str, torch.Tensor], out_dir: Path) -> None:
    """Save ``state`` as two safetensors shards plus ``model.safetensors.index.json``."""
    names = list(state)
    half = len(names) // 2
    weight_map, total_size = {}, 0
    for shard_name, shard_keys in zip(SHARD_NAMES, (names[:half], names[half:])):
        shard = {k: state[k].contiguous() for k in shard_keys}
        save_file(shard, str(out_dir / shard_name), metadata={"format": "pt"})
        for k in shard_keys:
            weight_map[k] = shard_name
            total_size += state[k].numel() * state[k].element_size()
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def make_tiny_t5(out_dir: str | Path, seed: int = 0, d_model: int = T5_CONFIG["d_model"]) -> Path:
    """Write a tiny random T5 v1.1 encoder folder (tokenizer + config + 2 shards) to ``out_dir``.

    ``d_model`` sets the output width (the DiT's ``text_hidden_size``: 4096 gives a two-layer stand-in with the
    width of t5-v1_1-xxl). Returns the folder path. Same arguments -> byte-identical files; the global torch
    RNG is untouched.
    """
    config = {**T5_CONFIG, "d_model": d_model}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spiece.model").write_bytes(train_tokenizer())
    for name, content in tokenizer_files().items():
        (out / name).write_text(json.dumps(content, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_shards(random_state_dict(T5Config(**config), seed), out)
    return out
