"""benchmarks/memory_table.py counts what transformers and the released key schemas count."""

import sys
from pathlib import Path

import torch
from transformers import T5Config, T5EncoderModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import memory_table  # noqa: E402


def test_t5_xxl_count_matches_transformers():
    config = T5Config(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=32128,
                      feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
    with torch.device("meta"):
        model = T5EncoderModel(config)
    assert memory_table.t5_xxl_encoder_parameters() == sum(p.numel() for p in model.parameters())


def test_counts_from_the_schemas():
    counts = memory_table.parameter_counts()
    assert counts["dit"] - counts["dit_trained_full"] == 17776 * 1920  # the fixed position table
    assert counts["vae_encoder"] + counts["vae_decoder"] == sum(memory_table.schema_sizes(
        "cogvideox-2b-vae.keys.tsv").values())
    table = memory_table.table()
    assert table.count("\n") == 9 and "**total**" in table
