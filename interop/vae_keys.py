"""The CogVideoX VAE between the SAT release (``3d-vae.pt``) and diffusers: the key maps both ways (every key must
map, or InputError), diffusers' config read off the weights, and the checked diffusers folder writer and reader.
`tools/convert_vae.py` is the command line.
"""

import re
from pathlib import Path

import torch

from checkpoints.atomic_dir import umask_mode
from checkpoints.output_folder import OutputFolder, check_output_folder, write_output
from checkpoints.weight_files import check_safetensors_file
from input_errors import InputError
from text_files import read_json

TOOL = "convert_vae.py"  # the writer named in an output folder's marker
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
        (r"^encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$", lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_resnet(m[3], key, to_diffusers=True)}"),
        (r"^encoder\.down\.(\d+)\.downsample\.(.*)$", lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0.{m[2]}"),
        (r"^(encoder|decoder)\.mid\.block_(\d)\.(.*)$", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_resnet(m[3], key, to_diffusers=True)}"),
        (r"^decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$", lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.resnets.{m[2]}.{_resnet(m[3], key, to_diffusers=True)}"),
        (r"^decoder\.up\.(\d+)\.upsample\.(.*)$", lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.upsamplers.0.{m[2]}"),
        (r"^(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(.*)$", lambda m: key),
    ]
    return _mapped(key, patterns, f"SAT VAE key {key!r} has no diffusers counterpart (not a CogVideoX VAE state dict?)")


def _mapped(key: str, patterns: list, unknown: str) -> str:
    """The first of `patterns` (regex, builder of the other side's name) that matches `key`, built; InputError
    `unknown` when none does."""
    for pattern, build in patterns:
        match = re.match(pattern, key)
        if match:
            return build(match)
    raise InputError(unknown)


def _resnet(rest: str, key: str, to_diffusers: bool) -> str:
    """A ResNet block's part name (`rest` of `key`) on the other side."""
    for sat_prefix, diffusers_prefix in _RESNET_PARTS:
        old, new = (sat_prefix, diffusers_prefix) if to_diffusers else (diffusers_prefix, sat_prefix)
        if rest.startswith(old):
            return new + rest[len(old) :]
    raise InputError(f"{'SAT' if to_diffusers else 'diffusers'} VAE key {key!r}: unknown ResNet block part {rest!r}")


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
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{_resnet(m[3], key, to_diffusers=False)}"),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)$", lambda m: f"encoder.down.{m[1]}.downsample.{m[2]}"),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{_resnet(m[3], key, to_diffusers=False)}"),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{_resnet(m[3], key, to_diffusers=False)}"),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)$", lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.{m[2]}"),
        (r"^(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(.*)$", lambda m: key),
    ]
    return _mapped(key, patterns, f"diffusers VAE key {key!r} has no SAT counterpart (not a CogVideoX VAE?)")




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
    (``check_output_folder``); `tools/convert_vae.py` checks it before reading the weights."""
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
