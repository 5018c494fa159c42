"""bf16 VAE on the CPU: ours (vae_modules/conv3d.py: the convolutions in fp32, rounded once) against diffusers'
AutoencoderKLCogVideoX in bf16 (PyTorch's bf16 CPU convolution), same weights, same latent and video, side by side.

    python benchmarks/bench_vae_bf16.py [--ch 32] [--num-res-blocks 1] [--latent-frames 3] [--latent-size 8 12]

Times the chunked decode (the reference's plan, diffusers' default) of one latent and the encode of its video
length, best of ``--repeats``, and prints ours / diffusers (lower is faster) and ours in bf16 against ours in fp32.
On a CPU without bf16 instructions (AVX2 only) PyTorch's bf16 convolution is ``aten::slow_conv3d_forward``.
"""

import argparse
import time
from typing import Callable

import torch


from benchmarks.bench_vae import _build_vae, _diffusers_vae
from model_family import pixel_frame_count


def best_seconds(run: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ch", type=int, default=32)
    parser.add_argument("--num-res-blocks", type=int, default=1)
    parser.add_argument("--latent-frames", type=int, default=3)
    parser.add_argument("--latent-size", type=int, nargs=2, default=[8, 12], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    vae = _build_vae(args.ch, args.num_res_blocks).eval()
    theirs = _diffusers_vae(vae.state_dict(), None).to(torch.bfloat16)
    ours_fp32 = vae
    ours = _build_vae(args.ch, args.num_res_blocks).eval()
    ours.load_state_dict(vae.state_dict())
    ours = ours.to(torch.bfloat16)
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(1, 16, args.latent_frames, *args.latent_size, generator=generator)
    frames = pixel_frame_count(args.latent_frames)
    video = torch.rand(1, 3, frames, 8 * args.latent_size[0], 8 * args.latent_size[1], generator=generator) * 2 - 1

    cases = {
        "decode": {"ours bf16": lambda: ours.decode_chunked(z.bfloat16()),
                   "diffusers bf16": lambda: theirs.decode(z.bfloat16()).sample,
                   "ours fp32": lambda: ours_fp32.decode_chunked(z)},
        "encode": {"ours bf16": lambda: ours.encode(video.bfloat16(), sample=False),
                   "diffusers bf16": lambda: theirs.encode(video.bfloat16()).latent_dist.mean,
                   "ours fp32": lambda: ours_fp32.encode(video, sample=False)},
    }
    print(f"VAE ch={args.ch}, num_res_blocks={args.num_res_blocks}: decode of {args.latent_frames} latent frames "
          f"{args.latent_size[0]}x{args.latent_size[1]}, encode of {frames} frames; {torch.get_num_threads()} threads, "
          f"best of {args.repeats}", flush=True)
    print("| what | ours bf16 s | diffusers bf16 s | ours / diffusers | ours fp32 s | ours bf16 / ours fp32 | "
          "max abs diff bf16 ours vs diffusers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for what, runs in cases.items():
        results = {name: best_seconds(run, args.repeats) for name, run in runs.items()}
        (mine, out), (peer, peer_out), (fp32, _) = (results[k] for k in ("ours bf16", "diffusers bf16", "ours fp32"))
        diff = float((out.float() - peer_out.float()).abs().max())
        print(f"| {what} | {mine:.2f} | {peer:.2f} | {mine / peer:.3f} | {fp32:.2f} | {mine / fp32:.2f} | {diff:.3g} |",
              flush=True)


if __name__ == "__main__":
    main()
