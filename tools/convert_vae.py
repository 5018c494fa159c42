"""Convert CogVideoX VAE weights between the SAT release (``3d-vae.pt``) and diffusers.

SAT side: ``{"state_dict": {...}}`` with keys ``encoder.down.{i}.block.{j}...`` (what
``vae_modules.autoencoder.VideoAutoencoderInferenceWrapper`` loads). diffusers side: a folder with
``config.json`` and safetensors that ``AutoencoderKLCogVideoX.from_pretrained`` loads. The
architecture sizes are read from the weights themselves; every key must map, or InputError.

    python tools/convert_vae.py to-diffusers SAT_FILE OUT_DIR [--scaling-factor 1.15258426]
    python tools/convert_vae.py to-sat DIFFUSERS_DIR OUT_FILE

Inputs are checked (a damaged file or a key the mapping does not know is one error line) and the output's folder
is checked writable before anything is read. Outputs are written all at once (a temporary name renamed into place)
with the modes the umask gives, and each is named in one "wrote" line at the end.
"""

import argparse
import os
from pathlib import Path

from checkpoints.atomic_dir import save_torch_atomically
from checkpoints.writable_folder import check_writable_folder
from input_errors import InputError, input_errors_as_messages
from interop.vae_keys import DEFAULT_SCALING_FACTOR, DIFFUSERS_WEIGHTS_NAME, load_diffusers_as_sat, save_diffusers
from vae_modules.autoencoder import load_vae_state_dict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to_diffusers = commands.add_parser("to-diffusers", help="SAT 3d-vae.pt -> diffusers folder",
                                       description="SAT 3d-vae.pt -> a diffusers AutoencoderKLCogVideoX folder")
    to_diffusers.add_argument("sat_file", help="the SAT VAE file ({'state_dict': ...}, e.g. CogVideoX-2b-sat/vae/3d-vae.pt)")
    to_diffusers.add_argument("out_dir", help="the diffusers folder to write (config.json + safetensors; replaced if it exists)")
    to_diffusers.add_argument("--scaling-factor", type=float, default=DEFAULT_SCALING_FACTOR,
                              help="the latent scaling factor written to config.json (default: the released VAE's %(default)s)")
    to_sat = commands.add_parser("to-sat", help="diffusers folder -> SAT 3d-vae.pt",
                                 description="a diffusers AutoencoderKLCogVideoX folder -> SAT 3d-vae.pt")
    to_sat.add_argument("diffusers_dir", help=f"the diffusers VAE folder (config.json + {DIFFUSERS_WEIGHTS_NAME})")
    to_sat.add_argument("out_file", help="the SAT VAE file to write ({'state_dict': ...}; replaced if it exists)")
    args = parser.parse_args(argv)
    if args.command == "to-diffusers":
        check_writable_folder(args.out_dir, "out_dir")
        if not os.path.isfile(args.sat_file):
            raise InputError(f"SAT VAE file {args.sat_file!r} does not exist (expected a 3d-vae.pt)")
        save_diffusers(load_vae_state_dict(args.sat_file, ignore_keys=()), args.out_dir, args.scaling_factor)
        print(f"wrote the diffusers VAE folder {args.out_dir}")
    else:
        if os.path.isdir(args.out_file):
            raise InputError(f"out_file {args.out_file!r} is a folder; expected the path of the 3d-vae.pt to write")
        check_writable_folder(os.path.dirname(os.path.abspath(args.out_file)), "out_file's folder")
        save_torch_atomically({"state_dict": load_diffusers_as_sat(args.diffusers_dir)}, Path(args.out_file))
        print(f"wrote the SAT VAE file {args.out_file}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
