"""Convert CogVideoX VAE weights between the SAT release (``3d-vae.pt``) and diffusers.

SAT side: ``{"state_dict": {...}}`` with keys ``encoder.down.{i}.block.{j}...`` (what
``vae_modules.autoencoder.VideoAutoencoderInferenceWrapper`` loads). diffusers side: a folder with
``config.json`` and safetensors that ``AutoencoderKLCogVideoX.from_pretrained`` loads. The
architecture sizes are read from the weights themselves; every key must map, or InputError.

    python tools/convert_vae.py to-diffusers SAT_FILE OUT_DIR [--scaling-factor 1.15258426]
    python tools/convert_vae.py to-sat DIFFUSERS_DIR OUT_FILE

Inputs are checked (a damaged file or a key the mapping does not know is one error line) and the output is
checked before anything is read: OUT_DIR follows docs/output_folders.md (a new or empty folder, or this tool's
earlier output, whose files are replaced and every other file kept), an existing OUT_FILE is replaced only with
--overwrite, and an output is never an input, inside one or holding one. Outputs are written all at once (a
temporary name renamed into place) with the modes the umask gives, and each is named in one "wrote" line at the
end.
"""

import argparse
import os
from pathlib import Path

from checkpoints.atomic_dir import save_torch_atomically
from checkpoints.output_folder import check_output_file, check_output_folder
from input_errors import InputError, input_errors_as_messages
from interop.vae_keys import (
    DEFAULT_SCALING_FACTOR,
    DIFFUSERS_WEIGHTS_NAME,
    TOOL,
    check_diffusers_vae_folder,
    load_diffusers_as_sat,
    save_diffusers,
)
from option_ranges import SCALING_FACTOR, check_value
from vae_modules.autoencoder import load_vae_state_dict


HELP = """Convert CogVideoX VAE weights between the SAT release (3d-vae.pt) and diffusers (a folder that
AutoencoderKLCogVideoX.from_pretrained loads). The sizes are read from the weights.

    python tools/convert_vae.py to-diffusers SAT_FILE OUT_DIR [--scaling-factor 1.15258426]
    python tools/convert_vae.py to-sat DIFFUSERS_DIR OUT_FILE
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to_diffusers = commands.add_parser("to-diffusers", help="SAT 3d-vae.pt -> diffusers folder",
                                       description="SAT 3d-vae.pt -> a diffusers AutoencoderKLCogVideoX folder")
    to_diffusers.add_argument("sat_file", help="the SAT VAE file ({'state_dict': ...}, e.g. CogVideoX-2b-sat/vae/3d-vae.pt)")
    to_diffusers.add_argument("out_dir", help="the diffusers folder to write (config.json + safetensors): new or empty, "
                                              "or this tool's earlier output")
    to_diffusers.add_argument("--scaling-factor", type=float, default=DEFAULT_SCALING_FACTOR,
                              help="the latent scaling factor written to config.json (default: the released VAE's %(default)s)")
    to_sat = commands.add_parser("to-sat", help="diffusers folder -> SAT 3d-vae.pt",
                                 description="a diffusers AutoencoderKLCogVideoX folder -> SAT 3d-vae.pt")
    to_sat.add_argument("diffusers_dir", help=f"the diffusers VAE folder (config.json + {DIFFUSERS_WEIGHTS_NAME})")
    to_sat.add_argument("out_file", help="the SAT VAE file to write ({'state_dict': ...}; an existing one only with --overwrite)")
    to_diffusers.add_argument("--overwrite", action="store_true", help="write into a folder holding other files: "
                              "replace only the files this tool writes (the others are kept)")
    to_sat.add_argument("--overwrite", action="store_true", help="replace an existing out_file")
    args = parser.parse_args(argv)
    if args.command == "to-diffusers":
        check_value("--scaling-factor", args.scaling_factor, SCALING_FACTOR)
        output = check_output_folder(args.out_dir, TOOL, "out_dir", {"sat_file": args.sat_file}, args.overwrite)
        if not os.path.isfile(args.sat_file):
            raise InputError(f"SAT VAE file {args.sat_file!r} does not exist (expected a 3d-vae.pt)")
        save_diffusers(load_vae_state_dict(args.sat_file, ignore_keys=()), output, args.scaling_factor)
        print(f"wrote the diffusers VAE folder {args.out_dir}")
    else:
        check_diffusers_vae_folder(args.diffusers_dir)
        check_output_file(args.out_file, "out_file", {"diffusers_dir": args.diffusers_dir}, args.overwrite)
        save_torch_atomically({"state_dict": load_diffusers_as_sat(args.diffusers_dir)}, Path(args.out_file))
        print(f"wrote the SAT VAE file {args.out_file}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
