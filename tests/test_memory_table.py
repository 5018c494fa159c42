"""benchmarks/memory_table.py counts what transformers and the released key schemas count."""

import torch
from transformers import T5Config, T5EncoderModel

from benchmarks import memory_table


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


def test_1_5_rows_from_the_released_schema():
    counts = memory_table.parameter_counts_1_5()
    assert counts["dit"] == sum(memory_table.schema_sizes("cogvideox1.5-5b-transformer.keys.tsv").values())
    assert counts["lora"] == 42 * 4 * 2 * 128 * 3072  # q, k, v and dense: A (r, 3072) and B (3072, r) per layer
    table = memory_table.table_1_5()
    assert table.count("\n") == 8 and "per GPU of 8" in table
    lora_total, zero3_total = (float(cell.strip(" *GB")) for cell in table.splitlines()[-1].split("|")[3:5])
    dit_gb = counts["dit"] * 2 / 1e9
    assert abs(lora_total - (dit_gb + counts["lora"] * 20 / 1e9)) < 0.02
    full = (counts["dit"] * 16 + (counts["t5"] + counts["vae"]) * 2) / 8 / 1e9
    assert abs(zero3_total - full) < 0.02


def test_bucket_rows_of_the_shipped_1_5_file():
    # 81 frames at 768x1360: 21 latent frames padded to 22, 11 x 48 x 85 video tokens + 224 text tokens
    assert memory_table.bucket_tokens(81, 768, 1360) == 224 + 11 * 48 * 85 == 45_104
    assert memory_table.bucket_tokens(49, 768, 768) == 224 + 7 * 48 * 48
    assert memory_table.activation_bytes(45_104, 2) == 2 * 45_104 * 3072 * 2 * (42 + 38)
    rows = memory_table.bucket_table().splitlines()[2:]
    assert len(rows) == 10 and [row.startswith(("| 81x768x1360 ", "| 81x1360x768 ")) for row in rows].count(True) == 2
    assert [row for row in rows if "(peak)" in row] == rows[:2]  # the largest buckets set the peak
