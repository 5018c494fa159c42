"""Memory that stays resident while fine-tuning CogVideoX-2B at full size, from the videos and from a latent cache.

Counts parameters from the released key schemas (tests/data/cogvideox-2b-*.keys.tsv: DiT, LoRA DiT, VAE) and from
the T5-XXL encoder configuration (d_model 4096, d_ff 10240, 24 layers, 64 heads of d_kv 64, vocab 32128, gated
GELU). Bytes per parameter follow configs/sft.yaml (fp16, DeepSpeed ZeRO-2 on one GPU, sat.ops.FusedEmaAdam):
every weight 2 bytes (the engine, T5 and VAE included, is cast to fp16); each trained parameter also holds an fp16
gradient (2), an fp32 master copy (4), Adam's two moments (8) and the EMA copy (4). Activations, DeepSpeed's
communication buckets and the CUDA context are not included. From a cache the T5 and the VAE encoder are not
built, nor the decoder (configs/sft.yaml logs latents only: only_log_video_latents).

CogVideoX1.5-5B (`table_1_5`, tests/data/cogvideox1.5-5b-transformer.keys.tsv; bf16 as configs/sft_1.5.yaml): LoRA
r=128 from a latent cache on one GPU (ZeRO-2, FusedEmaAdam: the LoRA has the 5B LoRA's shapes, hidden 3072 x 42
layers, tests/data/cogvideox-5b-lora.keys.tsv), and a full fine-tune under ZeRO-3 at 8 ranks, per GPU
(configs/sft_1.5_zero3.yaml: AdamW, no EMA: bf16 gradient 2 + fp32 master 4 + Adam 8 bytes per trained parameter;
every parameter of the engine, T5 and VAE included, partitioned 8 ways; with that config's offload_param /
offload_optimizer the weights' and the optimizer's shares live in CPU memory instead).

Per bucket of configs/sft_1.5_buckets.yaml (`bucket_table`, docs/buckets.md): the DiT's tokens and the activation
memory of one training step with activation checkpointing (`checkpoint_activations: true`, as the shipped file),
per GPU, in bf16 (2 bytes), for the file's micro-batch b:
    tokens N = 224 text tokens (the 1.5 T5 max_length) + T' x H' x W' video tokens, with T' = padded latent frames / 2
               (latent frames (F - 1) / 4 + 1, padded in front to even, model_family.py), H' = H / 16, W' = W / 16
    bytes    = b x N x d x 2 x (L + 2 x 19), d = 3072, L = 42
L x N x d: each layer's input, kept by the checkpointing; 19 x N x d: one layer's activations while it is recomputed
in the backward (norm out d, q, k, v 3d, rotated q, k 2d, attention out d, projection d, gated residual d, second norm
d, MLP 4d in and 4d after GELU, MLP out d), doubled for their gradients. Attention runs
as SDPA (no N x N matrix is stored). An estimate, not a measurement; the largest bucket sets the peak.

    python benchmarks/memory_table.py          # prints the README's tables (markdown)
"""

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "tests/data"
WEIGHT_BYTES = 2  # fp16
TRAINED_EXTRA_BYTES = 2 + 4 + 8 + 4  # fp16 gradient, fp32 master, Adam m and v, EMA
POSITION_TABLE = "mixins.pos_embed.pos_embedding"  # fixed sin-cos table: a parameter that is never trained


def schema_sizes(name: str) -> dict[str, int]:
    """{key: element count} of one keys.tsv ("key<TAB>[d0, d1, ...]" per line)."""
    sizes = {}
    for line in (SCHEMAS / name).read_text().splitlines():
        key, shape = line.split("\t")
        count = 1
        for dim in ast.literal_eval(shape):
            count *= dim
        sizes[key] = count
    return sizes


def t5_xxl_encoder_parameters(d_model=4096, d_ff=10240, layers=24, heads=64, d_kv=64, vocab=32128,
                              buckets=32) -> int:
    """T5 v1.1 XXL encoder: token embedding; per layer q, k, v, o, gated-GELU wi_0, wi_1, wo and two RMS norms;
    the relative position bias (layer 0 only) and the final norm."""
    attention = 4 * d_model * heads * d_kv
    feed_forward = 3 * d_model * d_ff
    per_layer = attention + feed_forward + 2 * d_model
    return vocab * d_model + layers * per_layer + buckets * heads + d_model


def parameter_counts() -> dict[str, int]:
    dit = schema_sizes("cogvideox-2b-transformer.keys.tsv")
    lora = schema_sizes("cogvideox-2b-lora.keys.tsv")
    vae = schema_sizes("cogvideox-2b-vae.keys.tsv")
    return {
        "dit": sum(dit.values()),
        "dit_trained_full": sum(v for k, v in dit.items() if not k.endswith(POSITION_TABLE)),
        "lora": sum(v for k, v in lora.items() if ".matrix_A." in k or ".matrix_B." in k),
        "vae_encoder": sum(v for k, v in vae.items() if k.startswith("encoder.")),
        "vae_decoder": sum(v for k, v in vae.items() if k.startswith("decoder.")),
        "t5": t5_xxl_encoder_parameters(),
    }


ZERO3_TRAINED_EXTRA_BYTES = 2 + 4 + 8  # AdamW under ZeRO-3: bf16 gradient, fp32 master, Adam m and v (no EMA)
ZERO3_RANKS = 8


def parameter_counts_1_5() -> dict[str, int]:
    dit = schema_sizes("cogvideox1.5-5b-transformer.keys.tsv")
    lora = schema_sizes("cogvideox-5b-lora.keys.tsv")  # r=128 on hidden 3072 x 42 layers, as CogVideoX1.5-5B
    vae = schema_sizes("cogvideox-2b-vae.keys.tsv")  # the same VAE
    return {
        "dit": sum(dit.values()),
        "lora": sum(v for k, v in lora.items() if ".matrix_A." in k or ".matrix_B." in k),
        "vae": sum(vae.values()),
        "t5": t5_xxl_encoder_parameters(),
    }


def table_1_5() -> str:
    """CogVideoX1.5-5B: LoRA from a cache (one GPU) and a full fine-tune under ZeRO-3 (per GPU of 8)."""
    n = parameter_counts_1_5()
    rows = [  # (what, parameters, LoRA-from-cache bytes per parameter or 0, ZeRO-3 full bytes per parameter or 0)
        ("DiT weights (bf16)", n["dit"], WEIGHT_BYTES, WEIGHT_BYTES / ZERO3_RANKS),
        ("LoRA weights (bf16)", n["lora"], WEIGHT_BYTES, 0),
        ("trained: grad + fp32 master + Adam + EMA (LoRA)", n["lora"], TRAINED_EXTRA_BYTES, 0),
        ("trained: grad + fp32 master + Adam (full, AdamW)", n["dit"], 0, ZERO3_TRAINED_EXTRA_BYTES / ZERO3_RANKS),
        ("T5-XXL encoder (bf16)", n["t5"], 0, WEIGHT_BYTES / ZERO3_RANKS),
        ("VAE (bf16)", n["vae"], 0, WEIGHT_BYTES / ZERO3_RANKS),
    ]
    lines = ["| resident during fine-tuning | parameters | 1.5-5B LoRA, cache, 1 GPU | 1.5-5B full, ZeRO-3, per GPU of 8 |",
             "|---|---:|---:|---:|"]
    totals = [0.0, 0.0]
    for what, count, *per in rows:
        cells = []
        for column, bytes_per in enumerate(per):
            size = gigabytes(count, bytes_per)
            totals[column] += size
            cells.append(f"{size:.2f} GB" if size else "-")
        lines.append(f"| {what} | {count / 1e6:,.1f} M | " + " | ".join(cells) + " |")
    lines.append("| **total** | | " + " | ".join(f"**{t:.2f} GB**" for t in totals) + " |")
    return "\n".join(lines)


TEXT_TOKENS_1_5, HIDDEN_1_5, LAYERS_1_5 = 224, 3072, 42  # configs/cogvideox1.5_5b.yaml
RECOMPUTED_LAYER_WIDTHS = 19  # one layer's activations during its recompute, in units of N x d (module docstring)
BUCKETS_FILE = REPO / "configs/sft_1.5_buckets.yaml"


def bucket_tokens(frames: int, height: int, width: int) -> int:
    """DiT tokens of one CogVideoX1.5 item: text + (padded latent frames / 2) x (H / 16) x (W / 16)."""
    latents = (frames - 1) // 4 + 1
    latents += latents % 2  # padded in front to even (model_family.py)
    return TEXT_TOKENS_1_5 + latents // 2 * (height // 16) * (width // 16)


def activation_bytes(tokens: int, micro_batch: int) -> int:
    """One step's activations with activation checkpointing, bf16 (module docstring)."""
    return micro_batch * tokens * HIDDEN_1_5 * 2 * (LAYERS_1_5 + 2 * RECOMPUTED_LAYER_WIDTHS)


def bucket_table(path: Path = BUCKETS_FILE) -> str:
    """Per bucket of `path`: tokens and one step's activation memory per GPU; the largest is the peak."""
    config = yaml.safe_load(path.read_text())
    micro_batch = config["deepspeed"]["train_micro_batch_size_per_gpu"]
    rows = [(tuple(bucket), bucket_tokens(*bucket)) for bucket in config["data"]["params"]["buckets"]]
    peak = max(tokens for _, tokens in rows)
    lines = [f"| bucket (frames x H x W) | tokens | activations, micro-batch {micro_batch}, checkpointed |",
             "|---|---:|---:|"]
    for bucket, tokens in rows:
        size = f"{activation_bytes(tokens, micro_batch) / 1e9:.1f} GB" + (" (peak)" if tokens == peak else "")
        lines.append(f"| {'x'.join(map(str, bucket))} | {tokens:,} | {size} |")
    return "\n".join(lines)


def gigabytes(count: int, bytes_per: float) -> float:
    return count * bytes_per / 1e9


def table() -> str:
    n = parameter_counts()
    rows = [  # (what, parameters, bytes each, in the LoRA run, in the full run, kept with a cache)
        ("DiT weights (fp16)", n["dit"], WEIGHT_BYTES, True, True, True),
        ("LoRA weights (fp16)", n["lora"], WEIGHT_BYTES, True, False, True),
        ("trained: grad + fp32 master + Adam + EMA (LoRA)", n["lora"], TRAINED_EXTRA_BYTES, True, False, True),
        ("trained: grad + fp32 master + Adam + EMA (full)", n["dit_trained_full"], TRAINED_EXTRA_BYTES, False, True,
         True),
        ("T5-XXL encoder (fp16)", n["t5"], WEIGHT_BYTES, True, True, False),
        ("VAE encoder (fp16)", n["vae_encoder"], WEIGHT_BYTES, True, True, False),
        ("VAE decoder (fp16)", n["vae_decoder"], WEIGHT_BYTES, True, True, False),
    ]
    lines = ["| resident during fine-tuning | parameters | 2B LoRA | 2B LoRA, cache | 2B full | 2B full, cache |",
             "|---|---:|---:|---:|---:|---:|"]
    totals = [0.0] * 4
    for what, count, per, in_lora, in_full, with_cache in rows:
        cells = []
        for column, (in_run, cached) in enumerate(((in_lora, False), (in_lora, True), (in_full, False),
                                                   (in_full, True))):
            size = gigabytes(count, per) if in_run and (with_cache or not cached) else 0.0
            totals[column] += size
            cells.append(f"{size:.2f} GB" if size else "-")
        lines.append(f"| {what} | {count / 1e6:,.1f} M | " + " | ".join(cells) + " |")
    lines.append("| **total** | | " + " | ".join(f"**{t:.2f} GB**" for t in totals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
    print()
    print(table_1_5())
    print()
    print(bucket_table())
