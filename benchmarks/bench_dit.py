"""Benchmark our DiT against diffusers' CogVideoXTransformer3DModel on identical weights (CPU, fp32).

    python benchmarks/bench_dit.py [--shape 2b|5b|i2v|1.5|1.5_i2v] [--layers 4] [--hidden 512] [--heads 8] [--repeats 5] [--threads N]

``--shape``: 2b (3D sin-cos positions), 5b (3D rotary, tables as buffers), i2v (rotary + learned position
table, 32 input channels), 1.5 (CogVideoX1.5: patch_size [2, 2, 2], rotary tables computed per input, against
diffusers' ``patch_size_t=2`` transformer with its sliced tables) or 1.5_i2v (1.5 with 32 input channels and the ofs
embedding, ``ofs = 2.0``). The 5B head layout is 48 heads of 64 (``--hidden 3072 --heads 48``), e.g.
``--shape i2v --hidden 3072 --heads 48 --layers 2 --frames 2 --height 8 --width 12``; 1.5 needs an even ``--frames``,
e.g. ``--shape 1.5_i2v --hidden 3072 --heads 48 --layers 2 --frames 4 --height 16 --width 24``.

Both models run in this process with the same threads; their repeats alternate (ours, theirs, ours,
...) and medians (and minima, the least disturbed runs) are reported, so load from other
processes hits both alike. Also measured here: this machine's fp32 matmul FLOP/s (square
``torch.mm``, measured between the forward repeats), and our forward's achieved FLOP/s (matmul and
attention FLOPs counted analytically) as a fraction of it.
"""

import argparse
import statistics
import time
from typing import Callable

import torch


from dit.patching import PatchSize
from sgm.util import instantiate_from_config
from interop.sat_to_diffusers import diffusers_config, sat_to_diffusers_state_dict


SHAPES = ("2b", "5b", "i2v", "1.5", "1.5_i2v")
DEFAULT_FRAMES = {False: 5, True: 6}  # latent frames by "has temporal patches" (CogVideoX1.5: an even count)


def position_config(shape: str, hidden: int, heads: int, text_length: int) -> dict:
    """The ``pos_embed_config`` of each model family."""
    if shape == "2b":
        return {
            "target": "dit_video_concat.Basic3DPositionEmbeddingMixin",
            "params": {"text_length": text_length, "height_interpolation": 1.875, "width_interpolation": 1.875},
        }
    return {
        "target": "dit_video_concat.Rotary3DPositionEmbeddingMixin",
        "params": {"hidden_size_head": hidden // heads, "text_length": text_length, "learnable_pos_embed": shape == "i2v"},
    }


def network_config(
    layers: int, hidden: int, heads: int, text_length: int, text_hidden: int, frames: int, height: int, width: int, shape: str = "2b"
) -> dict:
    """A ``network_config`` of the given family (``SHAPES``) and size (adaLN, qk LayerNorm)."""
    return {
        "target": "dit_video_concat.DiffusionTransformer",
        "params": {
            "transformer_args": {
                "checkpoint_activations": False, "vocab_size": 1, "max_sequence_length": 64, "layernorm_order": "pre",
                "skip_init": False, "model_parallel_size": 1, "is_decoder": False,
            },
            "num_frames": (frames - 1) * 4 + 1, "time_compressed_rate": 4, "latent_width": width, "latent_height": height,
            "patch_size": [2, 2, 2] if shape.startswith("1.5") else 2, "in_channels": 32 if shape.endswith("i2v") else 16,
            "out_channels": 16, "hidden_size": hidden, "num_layers": layers,
            "num_attention_heads": heads, "elementwise_affine": True, "time_embed_dim": 512,
            **({"ofs_embed_dim": 512} if shape == "1.5_i2v" else {}),
            "modules": {
                "pos_embed_config": position_config(shape, hidden, heads, text_length),
                "patch_embed_config": {"target": "dit_video_concat.ImagePatchEmbeddingMixin", "params": {"text_hidden_size": text_hidden}},
                "adaln_layer_config": {"target": "dit_video_concat.AdaLNMixin", "params": {"qk_ln": True}},
                "final_layer_config": {"target": "dit_video_concat.FinalLayerMixin"},
            },
        },
    }


def model_pair(config: dict, head_dim: int) -> tuple[torch.nn.Module, torch.nn.Module, tuple | None]:
    """Our DiT of ``config`` and diffusers' transformer holding the same weights, plus the rotary tables diffusers'
    pipeline passes in (None for sin-cos positions)."""
    from diffusers import CogVideoXTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    ours = instantiate_from_config(config)
    hf_config = diffusers_config(config)
    theirs = CogVideoXTransformer3DModel.from_config({k: v for k, v in hf_config.items() if not k.startswith("_")})
    with torch.no_grad():  # a non-zero learned table (5B-I2V), as after training; 2B's fixed sin-cos table stays as built,
        for name, param in ours.named_parameters():  # as diffusers recomputes it rather than loading it
            if name.endswith("pos_embed.pos_embedding") and param.requires_grad:
                param.normal_(0, 0.02)
    theirs.load_state_dict(sat_to_diffusers_state_dict(ours.state_dict(), hf_config["use_learned_positional_embeddings"]))
    rotary = None  # diffusers' pipeline computes its rotary tables once per call, outside the transformer
    if hf_config["use_rotary_positional_embeddings"]:
        params = config["params"]
        patch = PatchSize.from_config(params["patch_size"])
        grid = (params["latent_height"] // patch.h, params["latent_width"] // patch.w)
        frames = (params["num_frames"] - 1) // params["time_compressed_rate"] + 1
        if patch.temporal:  # as CogVideoXPipeline for patch_size_t: the slice of the configured table
            rotary = get_3d_rotary_pos_embed(head_dim, None, grid_size=grid, temporal_size=frames // patch.t,
                                             grid_type="slice", max_size=grid)
        else:
            rotary = get_3d_rotary_pos_embed(head_dim, ((0, 0), grid), grid_size=grid, temporal_size=frames, use_real=True)
    return ours, theirs, rotary


def ofs_for(shape: str) -> torch.Tensor | None:
    """The ofs value sampling passes to a model with the ofs embedding (1.5 I2V), else None."""
    return torch.tensor([2.0]) if shape == "1.5_i2v" else None


def forward_flops(
    layers: int, hidden: int, tokens: int, video_tokens: int, text_length: int, text_hidden: int, in_channels: int, patch_volume: int
) -> float:
    """Matmul + attention FLOPs of one forward (batch 1): qkv, out, MLP 4x, QK^T and PV, embeddings, output."""
    per_layer = 2 * tokens * hidden * (3 * hidden + hidden + 8 * hidden) + 4 * tokens * tokens * hidden
    embeddings = 2 * video_tokens * hidden * in_channels * patch_volume + 2 * text_length * text_hidden * hidden
    output = 2 * video_tokens * hidden * 16 * patch_volume
    return layers * per_layer + embeddings + output


def matmul_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int = 3) -> float:
    """Median seconds of ``torch.mm(a, b)`` (a short burst, so it sees the same load as its neighbours)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked; `--frames` left out is the shape's default (DEFAULT_FRAMES)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="2b", help="model family (see the module docstring)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--frames", type=int, default=None,
                        help=f"latent frames (default {DEFAULT_FRAMES[False]}; {DEFAULT_FRAMES[True]} for the 1.5 shapes, "
                             "whose temporal patches take an even count)")
    parser.add_argument("--height", type=int, default=32, help="latent height")
    parser.add_argument("--width", type=int, default=48, help="latent width")
    parser.add_argument("--text-length", type=int, default=226)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the square matmul timed as the peak")
    args = parser.parse_args(argv)
    if args.frames is None:
        args.frames = DEFAULT_FRAMES[args.shape.startswith("1.5")]
    if args.frames % temporal_patch_of(args.shape):
        parser.error(f"--shape {args.shape} takes an even --frames (temporal patches of 2), got {args.frames}")
    return args


def temporal_patch_of(shape: str) -> int:
    return 2 if shape.startswith("1.5") else 1


def main() -> None:
    args = parse_args()
    temporal_patch = temporal_patch_of(args.shape)
    torch.set_num_threads(args.threads)
    text_hidden = 256

    config = network_config(
        args.layers, args.hidden, args.heads, args.text_length, text_hidden, args.frames, args.height, args.width, args.shape
    )
    ours, theirs, rotary = model_pair(config, args.hidden // args.heads)
    ofs = ofs_for(args.shape)

    torch.manual_seed(0)
    in_channels = ours.in_channels
    x = torch.randn(1, args.frames, in_channels, args.height, args.width)
    timesteps = torch.tensor([500])
    context = torch.randn(1, args.text_length, text_hidden)
    video_tokens = args.frames // temporal_patch * (args.height // 2) * (args.width // 2)
    tokens = video_tokens + args.text_length

    def run_ours() -> torch.Tensor:
        return ours(x, timesteps, context, ofs=ofs)

    def run_theirs() -> torch.Tensor:
        return theirs(x, context, timesteps, ofs=ofs, image_rotary_emb=rotary, return_dict=False)[0]

    def forward(run: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            with torch.no_grad():
                run()
        return go

    def forward_backward(run: Callable[[], torch.Tensor], model: torch.nn.Module) -> Callable[[], None]:
        def go() -> None:
            model.zero_grad(set_to_none=True)
            run().square().mean().backward()
        return go

    with torch.no_grad():
        diff = (run_ours() - run_theirs()).abs().max().item()
    size = args.peak_size
    a, b = torch.randn(size, size), torch.randn(size, size)
    matmul_seconds(a, b)
    flops = forward_flops(args.layers, args.hidden, tokens, video_tokens, args.text_length, text_hidden, in_channels, temporal_patch * 4)
    results, best, peak_fractions, peaks = {}, {}, [], []
    for name, pair in {
        "forward": (forward(run_ours), forward(run_theirs)),
        "forward+backward": (forward_backward(run_ours, ours), forward_backward(run_theirs, theirs)),
    }.items():
        times = ([], [])
        for fn in pair:
            fn()  # warm-up
        for _ in range(args.repeats):
            for i, fn in enumerate(pair):
                times[i].append(timed(fn))
            if name == "forward":  # matmul peak measured between the runs it is compared with
                peaks.append(2 * size**3 / matmul_seconds(a, b))
                peak_fractions.append(flops / times[0][-1] / peaks[-1])
        results[name] = tuple(statistics.median(t) for t in times)
        best[name] = tuple(min(t) for t in times)

    print(f"shape {args.shape}; threads {args.threads}; layers {args.layers}, hidden {args.hidden}, heads {args.heads}, tokens {tokens} ({video_tokens} video)")
    print(f"max |ours - diffusers| on identical weights: {diff:.2e}")
    for name, (mine, ref) in results.items():
        print(f"{name:17s} median: ours {mine * 1e3:8.1f} ms   diffusers {ref * 1e3:8.1f} ms   ratio ours/diffusers {mine / ref:.3f}")
        mine, ref = best[name]
        print(f"{name:17s} min:    ours {mine * 1e3:8.1f} ms   diffusers {ref * 1e3:8.1f} ms   ratio ours/diffusers {mine / ref:.3f}")
    print(
        f"our forward: {flops / 1e9:.1f} GFLOP, {flops / results['forward'][0] / 1e9:.1f} GFLOP/s (median); "
        f"matmul peak {statistics.median(peaks) / 1e9:.1f} GFLOP/s (median); "
        f"fraction of peak per repeat {[f'{f:.0%}' for f in peak_fractions]}, median {statistics.median(peak_fractions):.0%}"
    )


if __name__ == "__main__":
    main()
