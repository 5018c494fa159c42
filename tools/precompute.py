"""Encode a fine-tuning dataset once: each item's VAE posterior and T5 embedding, into a latent cache.

    python tools/precompute.py --base configs/cogvideox_2b_lora.yaml configs/sft.yaml --output <cache_dir>
    torchrun --nproc_per_node=N tools/precompute.py ...       # the items are split between the processes

With `cp_size: c` in the model config's `first_stage_config`, groups of c processes encode each video together
(the VAE's time split, as in training); N must be a multiple of c.

The datasets are those `train_data` / `valid_data` of the configs name, or the folders given with `--data`; the
VAE, the T5 and the `data:` parameters are the configs'. With one source folder `<cache_dir>` is the cache; with
several, `<cache_dir>/<folder name>/` each. Then train with `train_data` / `valid_data` pointing at the caches and
the same configs (docs/fine-tuning.md, "Fine-tuning from a latent cache"). Run it again after a crash: complete items are
kept. The T5 pass runs first, then the VAE pass, so only one of them is in memory at a time; on the GPU when there
is one.
"""

import argparse
import sys
from pathlib import Path

from input_errors import input_errors_as_messages
from latent_cache.from_configs import precompute_from_configs


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", nargs="+", required=True, help="the training run's YAML config files, in order")
    parser.add_argument("--output", required=True, help="cache folder (created; resumed when it holds a cache)")
    parser.add_argument("--overwrite", action="store_true", help="write the cache into a folder holding other files (they "
                                                                 "are kept), or encode a cache of other settings again")
    parser.add_argument("--data", nargs="+", help="video folders to encode (default: train_data + valid_data)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> list[Path]:
    options = parse_args(argv)
    return precompute_from_configs(options.base, options.output, options.data, options.overwrite)


if __name__ == "__main__":
    with input_errors_as_messages():
        main(sys.argv[1:])
