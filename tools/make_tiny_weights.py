"""Write a tiny random-initialised CogVideoX model set in the REAL file formats, deterministically from a seed.

    python tools/make_tiny_weights.py [--config configs/tiny/cogvideox_tiny.yaml] [--out DIR] [--seed 0]

Writes, for the sizes in the config:
  <out>/transformer/latest, <out>/transformer/1/mp_rank_00_model_states.pt   SAT checkpoint ({"module": ...},
                                                                              keys `model.diffusion_model.*`)
  <out>/vae/3d-vae.pt                                                         {"state_dict": ...} as the release
  <out>/t5/                                                                   T5 encoder folder + sentencepiece model
The videos these weights make are noise; the pipeline that makes them is the real one.

Configs: configs/tiny/cogvideox_tiny.yaml (2B-shaped), cogvideox_tiny_5b.yaml (5B-shaped: rotary tables saved as
buffers) and cogvideox_tiny_i2v.yaml (5B-I2V-shaped: 32 input channels, a learned position table, filled like every
trainable parameter), cogvideox1.5_tiny.yaml and cogvideox1.5_tiny_i2v.yaml (CogVideoX1.5-shaped: patch_size [2, 2, 2],
no rotary tables in the file; I2V with 32 input channels and the ofs embedding: the released 1.5 key layout at tiny
sizes). --out defaults to the folder the config reads its weights from (its VAE's `<out>/vae/3d-vae.pt` and T5
`<out>/t5`: tiny_weights, tiny_weights_5b, tiny_weights_i2v, tiny_weights_1.5, tiny_weights_1.5_i2v). The folder
follows docs/output_folders.md: new or empty, or this tool's earlier output (replaced; other files are kept).
"""

import argparse

from input_errors import input_errors_as_messages
from tiny.weights import make_tiny_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny/cogvideox_tiny.yaml", help="the tiny model YAML (default: %(default)s)")
    parser.add_argument("--out", help="output folder (default: the folder the config reads its weights from)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder holding other files: replace only "
                                                                 "the files this tool writes (the others are kept)")
    args = parser.parse_args(argv)
    for output in make_tiny_weights(args.config, args.out, args.seed, args.overwrite):
        print(f"wrote {output}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
