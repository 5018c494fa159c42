"""Write a tiny synthetic fine-tuning data set (moving colour waves) in the data set layout: `<out>/videos/<name>.mp4`
with `<out>/labels/<name>.txt`.

    python tools/make_tiny_data.py --out tiny_data                # one 16-frame 64x96 clip at 8 fps ("waves")
    python tools/make_tiny_data.py --out tiny_data --clips 4      # four distinct 64x96 clips (clip0 ... clip3)
    python tools/make_tiny_data.py --out tiny_data --mixed        # portrait, landscape and square clips of 2 to 6 s

The folder follows docs/output_folders.md: new or empty, or this tool's earlier output (replaced; other files are
kept).
"""

import argparse

from checkpoints.output_folder import check_output_folder, write_output
from input_errors import input_errors_as_messages
from option_ranges import POSITIVE, check_value
from tiny.videos import write_dataset, write_mixed, write_video

TOOL = "make_tiny_data.py"
ONE_CLIP_CAPTION = "colourful waves drifting to the left"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the data set folder to write")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--clips", type=int, help="this many distinct 64x96 clips instead of the one 'waves' clip")
    shape.add_argument("--mixed", action="store_true", help="six clips of mixed orientation and length (for buckets)")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder holding other files: replace only "
                                                                 "the files this tool writes (the others are kept)")
    args = parser.parse_args(argv)
    if args.clips is not None:
        check_value("--clips", args.clips, POSITIVE)
    output = check_output_folder(args.out, TOOL, "--out", overwrite=args.overwrite)

    def write(folder) -> None:
        if args.mixed:
            write_mixed(folder)
        elif args.clips is not None:
            write_dataset(folder, args.clips)
        else:
            write_video(folder, "waves", ONE_CLIP_CAPTION)

    write_output(output, write)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
