"""Write a tiny random T5 encoder folder in the layout of the released ``t5-v1_1-xxl`` folder (see tiny/t5.py).

    python tools/tiny_t5.py OUT_DIR [--seed 0]
"""

import argparse

from checkpoints.output_folder import check_output_folder, write_output
from input_errors import input_errors_as_messages
from tiny.t5 import make_tiny_t5

TOOL = "tiny_t5.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write: new or empty, or this tool's earlier output "
                                        "(docs/output_folders.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder holding other files: replace "
                                                                 "only the files this tool writes (the others are kept)")
    args = parser.parse_args()
    output = check_output_folder(args.out_dir, TOOL, "out_dir", overwrite=args.overwrite)
    write_output(output, lambda folder: make_tiny_t5(folder, seed=args.seed))
    print(f"wrote {args.out_dir}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
