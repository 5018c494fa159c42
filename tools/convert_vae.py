"""Convert CogVideoX VAE weights between the SAT release (``3d-vae.pt``) and diffusers.

SAT side: ``{"state_dict": {...}}`` with keys ``encoder.down.{i}.block.{j}...`` (what
``vae_modules.autoencoder.VideoAutoencoderInferenceWrapper`` loads). diffusers side: a folder with
``config.json`` and safetensors that ``AutoencoderKLCogVideoX.from_pretrained`` loads. The
architecture sizes are read from the weights themselves; every key must map, or ValueError.

    python -m tools.convert_vae to-diffusers SAT_FILE OUT_DIR [--scaling-factor 1.15258426]
    python -m tools.convert_vae to-sat DIFFUSERS_DIR OUT_FILE
"""

import argparse
import os
import re

import torch

from input_errors import InputError, input_errors_as_messages

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
    """Map one SAT key to its diffusers name (ValueError for a key this mapping does not know)."""
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
    raise ValueError(f"SAT VAE key {key!r} has no diffusers counterpart")


def _resnet(rest: str, key: str) -> str:
    for sat_prefix, diffusers_prefix in _RESNET_PARTS:
        if rest.startswith(sat_prefix):
            return diffusers_prefix + rest[len(sat_prefix) :]
    raise ValueError(f"SAT VAE key {key!r}: unknown ResNet block part {rest!r}")


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
            raise ValueError(f"diffusers VAE key {key!r} does not round-trip through {sat_key!r}")
        converted[sat_key] = value
    return converted


def _diffusers_to_sat_key(key: str, num_levels: int) -> str:
    """Map one diffusers key to its SAT name (ValueError for a key this mapping does not know)."""
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
    raise ValueError(f"diffusers VAE key {key!r} has no SAT counterpart")


def _unresnet(rest: str, key: str) -> str:
    for sat_prefix, diffusers_prefix in _RESNET_PARTS:
        if rest.startswith(diffusers_prefix):
            return sat_prefix + rest[len(diffusers_prefix) :]
    raise ValueError(f"diffusers VAE key {key!r}: unknown ResNet block part {rest!r}")


def diffusers_config(state_dict: dict[str, torch.Tensor], scaling_factor: float = 1.15258426) -> dict:
    """``AutoencoderKLCogVideoX`` constructor arguments read off a SAT VAE state dict."""
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


def save_diffusers(sat_state_dict: dict[str, torch.Tensor], out_dir: str, scaling_factor: float = 1.15258426) -> None:
    """Write a ``from_pretrained``-loadable diffusers VAE folder from a SAT VAE state dict."""
    from diffusers import AutoencoderKLCogVideoX

    sat_state_dict = {k: v for k, v in sat_state_dict.items() if not k.startswith("loss.")}
    model = AutoencoderKLCogVideoX(**diffusers_config(sat_state_dict, scaling_factor))
    model.load_state_dict(sat_to_diffusers(sat_state_dict), strict=True)
    model.save_pretrained(out_dir)


def load_diffusers_as_sat(model_dir: str) -> dict[str, torch.Tensor]:
    """Read a diffusers VAE folder and return the SAT-format state dict."""
    from diffusers import AutoencoderKLCogVideoX

    model = AutoencoderKLCogVideoX.from_pretrained(model_dir)
    return diffusers_to_sat(model.state_dict())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to_diffusers = commands.add_parser("to-diffusers", help="SAT 3d-vae.pt -> diffusers folder")
    to_diffusers.add_argument("sat_file")
    to_diffusers.add_argument("out_dir")
    to_diffusers.add_argument("--scaling-factor", type=float, default=1.15258426)
    to_sat = commands.add_parser("to-sat", help="diffusers folder -> SAT 3d-vae.pt")
    to_sat.add_argument("diffusers_dir")
    to_sat.add_argument("out_file")
    args = parser.parse_args(argv)
    if args.command == "to-diffusers":
        if not os.path.isfile(args.sat_file):
            raise InputError(f"SAT VAE file {args.sat_file!r} does not exist (expected a 3d-vae.pt)")
        checkpoint = torch.load(args.sat_file, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise InputError(f"{args.sat_file!r}: expected a dict with a 'state_dict' entry")
        save_diffusers(checkpoint["state_dict"], args.out_dir, args.scaling_factor)
    else:
        torch.save({"state_dict": load_diffusers_as_sat(args.diffusers_dir)}, args.out_file)


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
