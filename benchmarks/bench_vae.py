"""VAE decode benchmark: peak memory and time, one-shot vs chunked, ours vs diffusers.

All cases decode the same latent (13 latent frames -> 49 video frames) with the same random
weights (seeded) at a mid-size config; diffusers gets them through ``tools.convert_vae``.

Memory: each case decodes once in a fresh subprocess; we report that process's RSS high-water
mark (``VmHWM``) in total and above the RSS just before decoding (the mark is reset there through
``/proc/self/clear_refs``, so building the model does not count). glibc keeps freed blocks under
its dynamic mmap threshold (up to 32 MiB) in the heap, so by default the high-water mark of a
chunked decode is mostly fragmentation; the main rows therefore run with
``MALLOC_MMAP_THRESHOLD_=1048576`` (every large tensor mapped and unmapped, so RSS follows the
live tensors), and our two cases are repeated with glibc's defaults for reference.

Time: one subprocess builds all four decoders and runs them in turn ``--repeats`` times; we report
the best wall time and the best process CPU time of each (the machine may be shared, so single
wall timings are noisy and interleaving keeps the comparison fair).

    python benchmarks/bench_vae.py [--ch 64] [--num-res-blocks 2] [--latent-size 8 12] [--repeats 2]

Targets: our chunked decode needs <= 1/3 of the memory of our one-shot decode; our decode is
no slower than diffusers' on the same plan.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable

import torch


CASES = ["ours_one_shot", "ours_chunked", "diffusers_one_shot", "diffusers_chunked"]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _build_vae(ch: int, num_res_blocks: int):
    from sgm.util import instantiate_from_config

    sizes = {"ch": ch, "ch_mult": [1, 2, 2, 4], "num_res_blocks": num_res_blocks, "attn_resolutions": [],
             "z_channels": 16, "double_z": True, "resolution": 256, "in_channels": 3, "out_ch": 3, "dropout": 0.0}
    config = {
        "target": "vae_modules.autoencoder.VideoAutoencoderInferenceWrapper",
        "params": {
            "cp_size": 1, "ckpt_path": None, "ignore_keys": ["loss"],
            "loss_config": {"target": "torch.nn.Identity"},
            "regularizer_config": {"target": "vae_modules.regularizers.DiagonalGaussianRegularizer"},
            "encoder_config": {"target": "vae_modules.cp_enc_dec.ContextParallelEncoder3D", "params": {**sizes, "gather_norm": True}},
            "decoder_config": {"target": "vae_modules.cp_enc_dec.ContextParallelDecoder3D", "params": {**sizes, "gather_norm": False}},
        },
    }
    torch.manual_seed(0)
    return instantiate_from_config(config)


def _diffusers_vae(state_dict: dict[str, torch.Tensor], latent_frames_per_batch: int | None):
    from diffusers import AutoencoderKLCogVideoX

    from interop.vae_keys import diffusers_config, sat_to_diffusers

    model = AutoencoderKLCogVideoX(**diffusers_config(state_dict)).eval()
    model.load_state_dict(sat_to_diffusers(state_dict))
    if latent_frames_per_batch is not None:
        model.num_latent_frames_batch_size = latent_frames_per_batch
    return model


def _decoders(cases: list[str], args: argparse.Namespace) -> dict[str, Callable[[], torch.Tensor]]:
    """A zero-argument decode function per case (each holds its model and the latent)."""
    vae = _build_vae(args.ch, args.num_res_blocks)
    z = torch.randn(1, 16, args.latent_frames, *args.latent_size, generator=torch.Generator().manual_seed(1))
    decoders = {}
    for case in cases:
        if case == "ours_one_shot":
            decoders[case] = lambda: vae.decode(z)
        elif case == "ours_chunked":
            decoders[case] = lambda: vae.decode_chunked(z)
        else:  # diffusers' default decode batches 2 latent frames (the reference plan); one-shot takes all
            model = _diffusers_vae(vae.state_dict(), args.latent_frames if case == "diffusers_one_shot" else None)
            decoders[case] = lambda model=model: model.decode(z).sample
    return decoders


def measure_memory(case: str, args: argparse.Namespace) -> dict:
    """Decode once; the RSS high-water mark in total and above the pre-decode RSS, in MiB."""
    decoders = _decoders([case], args)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    baseline = _rss_kib("VmRSS")
    with torch.no_grad():
        shape = list(decoders[case]().shape)
    peak = _rss_kib("VmHWM")
    return {"peak_mib": peak / 1024, "decode_mib": (peak - baseline) / 1024, "shape": shape}


def measure_time(args: argparse.Namespace) -> dict:
    """Run every case in turn ``repeats`` times; best wall and CPU seconds of each."""
    decoders = _decoders(CASES, args)
    wall = {case: [] for case in CASES}
    cpu = {case: [] for case in CASES}
    with torch.no_grad():
        for _ in range(args.repeats):
            for case, decode in decoders.items():
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                decode()
                wall[case].append(time.perf_counter() - wall_start)
                cpu[case].append(time.process_time() - cpu_start)
    return {case: {"wall_s": min(wall[case]), "cpu_s": min(cpu[case])} for case in CASES}


def _subprocess(args: argparse.Namespace, mode: str, glibc_default: bool = False) -> dict:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if not glibc_default:
        env["MALLOC_MMAP_THRESHOLD_"] = "1048576"
    command = [sys.executable, os.path.abspath(__file__), "--run", mode, "--ch", str(args.ch),
               "--num-res-blocks", str(args.num_res_blocks), "--latent-frames", str(args.latent_frames),
               "--repeats", str(args.repeats), "--latent-size", *map(str, args.latent_size)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace) -> None:
    memory = {case: _subprocess(args, case) for case in CASES}
    memory_default = {case: _subprocess(args, case, glibc_default=True) for case in CASES[:2]}
    timing = _subprocess(args, "timing")
    print(f"decode of {args.latent_frames} latent frames {args.latent_size[0]}x{args.latent_size[1]} -> video "
          f"{memory['ours_chunked']['shape']}, ch={args.ch}, num_res_blocks={args.num_res_blocks}, "
          f"{torch.get_num_threads()} threads, time = best of {args.repeats}")
    print(f"{'case':<20}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}{'decode MiB':>12}{'glibc-default decode MiB':>26}")
    for case in CASES:
        default = f"{memory_default[case]['decode_mib']:.0f}" if case in memory_default else "-"
        print(f"{case:<20}{timing[case]['wall_s']:>9.2f}{timing[case]['cpu_s']:>9.2f}"
              f"{memory[case]['peak_mib']:>10.0f}{memory[case]['decode_mib']:>12.0f}{default:>26}")

    def ratio(table: dict, a: str, b: str, key: str) -> float:
        return table[a][key] / table[b][key]

    print(f"ours chunked / one-shot decode memory:       {ratio(memory, 'ours_chunked', 'ours_one_shot', 'decode_mib'):.3f} (target <= 0.333)")
    print(f"ours chunked / one-shot peak RSS:            {ratio(memory, 'ours_chunked', 'ours_one_shot', 'peak_mib'):.3f}")
    print(f"  with glibc's default allocator (decode):   {ratio(memory_default, 'ours_chunked', 'ours_one_shot', 'decode_mib'):.3f}")
    for kind in ("chunked", "one_shot"):
        ours, theirs = f"ours_{kind}", f"diffusers_{kind}"
        print(f"ours / diffusers {kind:<9} wall {ratio(timing, ours, theirs, 'wall_s'):.3f}, "
              f"cpu {ratio(timing, ours, theirs, 'cpu_s'):.3f} (target <= 1), "
              f"decode memory {ratio(memory, ours, theirs, 'decode_mib'):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ch", type=int, default=64)
    parser.add_argument("--num-res-blocks", type=int, default=2)
    parser.add_argument("--latent-size", type=int, nargs=2, default=[8, 12], metavar=("H", "W"))
    parser.add_argument("--latent-frames", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--run", choices=CASES + ["timing"], help="internal: one measurement in this process")
    args = parser.parse_args()
    if args.run is None:
        report(args)
    elif args.run == "timing":
        print(json.dumps(measure_time(args)))
    else:
        print(json.dumps(measure_memory(args.run, args)))


if __name__ == "__main__":
    main()
