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
import re
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints.atomic_dir import save_torch_atomically, umask_mode
from checkpoints.atomic_dir import save_torch_atomically, umask_mode, write_folder_atomically
from input_errors import InputError, input_errors_as_messages  # noqa: E402
from output_folder import OutputFolder, check_output_file, check_output_folder, write_output  # noqa: E402
from vae_modules.autoencoder import load_vae_state_dict  # noqa: E402
from option_ranges import SCALING_FACTOR, check_value
from text_files import read_json
from checkpoints.weight_files import check_safetensors_file
from checkpoints.weight_files import check_safetensors_file
from checkpoints.writable_folder import check_writable_folder

TOOL = "convert_vae.py"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
DEFAULT_SCALING_FACTOR = 1.15258426  # the released VAE's scaling_factor (diffusers' CogVideoX-2b vae/config.json)

# (SAT pattern, diffusers pattern) for keys below ``encoder.`` / ``decoder.``; {L} is a level,
# {B} a block index. Decoder levels are reversed between the two (SAT up.0 = diffusers up_blocks.{last}).
_RESNET_PARTS = [
    ("norm1.", "norm1."),
    ("norm2.", "norm2."),
    ("conv1.conv.", "conv1.conv."),
    ("conv2.conv.", "conv2.conv."),
    ("nin_shortcut.", "conv_shortcut."),
]


def _sat_to_diffusers_key(key: str, num_levels: int) -> str:
    """Map one SAT key to its diffusers name (InputError for a key this mapping does not know)."""
    patterns = [
        (r"^encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$", lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_resnet(m[3], key)}"),
        (r"^encoder\.down\.(\d+)\.downsample\.(.*)$", lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0.{m[2]}"),
        (r"^(encoder|decoder)\.mid\.block_(\d)\.(.*)$", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_resnet(m[3], key)}"),
        (r"^decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$", lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.resnets.{m[2]}.{_resnet(m[3], key)}"),
        (r"^decoder\.up\.(\d+)\.upsample\.(.*)$", lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.upsamplers.0.{m[2]}"),
        (r"^(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(.*)$", lambda m: key),
    ]
    for pattern, build in patterns:
        match = re.match(pattern, key)
        if match:
            return build(match)
    raise InputError(f"SAT VAE key {key!r} has no diffusers counterpart (not a CogVideoX VAE state dict?)")


def _resnet(rest: str, key: str) -> str:
    for sat_prefix, diffusers_prefix in _RESNET_PARTS:
        if rest.startswith(sat_prefix):
            return diffusers_prefix + rest[len(sat_prefix) :]
    raise InputError(f"SAT VAE key {key!r}: unknown ResNet block part {rest!r}")


def _num_levels(keys: list[str], pattern: str) -> int:
    levels = {int(m[1]) for m in (re.match(pattern, k) for k in keys) if m}
    if not levels:
        raise InputError(f"no key matches {pattern!r}: not a CogVideoX VAE state dict")
    return max(levels) + 1


def sat_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SAT VAE state dict (``loss.*`` dropped) -> diffusers ``AutoencoderKLCogVideoX`` state dict."""
    keys = [k for k in state_dict if not k.startswith("loss.")]
    num_levels = _num_levels(keys, r"^encoder\.down\.(\d+)\.")
    return {_sat_to_diffusers_key(k, num_levels): state_dict[k] for k in keys}


def diffusers_to_sat(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKLCogVideoX`` state dict -> SAT VAE state dict (exact inverse)."""
    num_levels = _num_levels(list(state_dict), r"^encoder\.down_blocks\.(\d+)\.")
    converted = {}
    for key, value in state_dict.items():
        sat_key = _diffusers_to_sat_key(key, num_levels)
        if _sat_to_diffusers_key(sat_key, num_levels) != key:
            raise InputError(f"diffusers VAE key {key!r} does not round-trip through {sat_key!r}")
        converted[sat_key] = value
    return converted


def _diffusers_to_sat_key(key: str, num_levels: int) -> str:
    """Map one diffusers key to its SAT name (InputError for a key this mapping does not know)."""
    patterns = [
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{_unresnet(m[3], key)}"),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)$", lambda m: f"encoder.down.{m[1]}.downsample.{m[2]}"),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{_unresnet(m[3], key)}"),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{_unresnet(m[3], key)}"),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)$", lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.{m[2]}"),
        (r"^(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(.*)$", lambda m: key),
    ]
    for pattern, build in patterns:
        match = re.match(pattern, key)
        if match:
            return build(match)
    raise InputError(f"diffusers VAE key {key!r} has no SAT counterpart (not a CogVideoX VAE?)")


def _unresnet(rest: str, key: str) -> str:
    for sat_prefix, diffusers_prefix in _RESNET_PARTS:
        if rest.startswith(diffusers_prefix):
            return sat_prefix + rest[len(diffusers_prefix) :]
    raise InputError(f"diffusers VAE key {key!r}: unknown ResNet block part {rest!r}")


def diffusers_config(state_dict: dict[str, torch.Tensor], scaling_factor: float = DEFAULT_SCALING_FACTOR) -> dict:
    """``AutoencoderKLCogVideoX`` constructor arguments read off a SAT VAE state dict."""
    needed = ["encoder.conv_in.conv.weight", "decoder.conv_out.conv.weight", "decoder.conv_in.conv.weight",
              "encoder.down.0.block.0.conv1.conv.weight"]
    absent = [key for key in needed if key not in state_dict]
    if absent:
        raise InputError(f"the SAT VAE state dict lacks {absent} (not a complete CogVideoX VAE)")
    num_levels = _num_levels(list(state_dict), r"^encoder\.down\.(\d+)\.")
    blocks = {int(m[1]) for m in (re.match(r"^encoder\.down\.0\.block\.(\d+)\.", k) for k in state_dict) if m}
    return {
        "in_channels": state_dict["encoder.conv_in.conv.weight"].shape[1],
        "out_channels": state_dict["decoder.conv_out.conv.weight"].shape[0],
        "down_block_types": ["CogVideoXDownBlock3D"] * num_levels,
        "up_block_types": ["CogVideoXUpBlock3D"] * num_levels,
        "block_out_channels": [
            state_dict[f"encoder.down.{level}.block.0.conv1.conv.weight"].shape[0] for level in range(num_levels)
        ],
        "latent_channels": state_dict["decoder.conv_in.conv.weight"].shape[1],
        "layers_per_block": max(blocks) + 1,
        "norm_num_groups": 32,
        "temporal_compression_ratio": 4,
        "scaling_factor": scaling_factor,
    }


def save_diffusers(sat_state_dict: dict[str, torch.Tensor], out_dir: str | OutputFolder,
                   scaling_factor: float = DEFAULT_SCALING_FACTOR) -> None:
    """Write a ``from_pretrained``-loadable diffusers VAE folder from a SAT VAE state dict, all at once, its files
    with the umask's modes (``save_pretrained`` writes the safetensors 0600). A path is checked here
    (``check_output_folder``); ``main`` checks it before reading the weights."""
    from diffusers import AutoencoderKLCogVideoX

    sat_state_dict = {k: v for k, v in sat_state_dict.items() if not k.startswith("loss.")}
    model = AutoencoderKLCogVideoX(**diffusers_config(sat_state_dict, scaling_factor))
    model.load_state_dict(sat_to_diffusers(sat_state_dict), strict=True)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        for path in folder.rglob("*"):
            umask_mode(path)

    output = out_dir if isinstance(out_dir, OutputFolder) else check_output_folder(out_dir, TOOL, "out_dir")
    write_output(output, write)


def check_diffusers_vae_folder(model_dir: str) -> None:
    """InputError unless `model_dir` holds config.json and a complete diffusers_pytorch_model.safetensors."""
    folder = Path(model_dir)
    read_json(folder / "config.json", f"a diffusers AutoencoderKLCogVideoX folder (config.json + {DIFFUSERS_WEIGHTS_NAME})")
    check_safetensors_file(folder / DIFFUSERS_WEIGHTS_NAME, "the weights of a diffusers AutoencoderKLCogVideoX")


def load_diffusers_as_sat(model_dir: str) -> dict[str, torch.Tensor]:
    """Read a diffusers VAE folder and return the SAT-format state dict."""
    from diffusers import AutoencoderKLCogVideoX

    check_diffusers_vae_folder(model_dir)
    try:
        model = AutoencoderKLCogVideoX.from_pretrained(model_dir)
    except (ValueError, OSError) as err:
        raise InputError(f"{model_dir}: diffusers cannot load it as an AutoencoderKLCogVideoX ({str(err).splitlines()[0]})") from None
    return diffusers_to_sat(model.state_dict())


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
