"""Does a transformer checkpoint belong to the model a config builds? Checked by the converter and the LoRA merge
before any conversion, so that e.g. a 2B (sin-cos) checkpoint given with a rotary 5B config is refused instead of
converted as something it is not.

The expected keys and shapes are those of the SAT DiT the config describes, found without building it: diffusers'
`CogVideoXTransformer3DModel` for the config is built on the meta device and its keys mapped back to SAT's (the
inverse conversion). Beyond the tables conversions drop and recompute (`OPTIONAL_KEYS`), every key must be there;
LoRA matrices are checked by the merge itself.
"""

from typing import Any, Mapping

import torch

from checkpoints.checkpoint_shapes import check_shapes, dit_family
from input_errors import InputError
from checkpoints.sat_checkpoint import is_lora_key
from interop.diffusers_to_sat import diffusers_to_sat_state_dict
from interop.sat_to_diffusers import DROPPED_KEYS, diffusers_config

SHOWN_KEYS = 3
# The rotary tables (recomputed from the config) and SAT's unused learned table of the rotary variant (zeros): the
# converters drop them, as v1.0's converter does, so a checkpoint may lack them.
OPTIONAL_KEYS = DROPPED_KEYS


def expected_sat_shapes(network_config: Mapping[str, Any]) -> dict[str, torch.Size]:
    """Key -> shape of the SAT DiT (no prefix, no LoRA) that `network_config` (the YAML's model.network_config) builds."""
    from diffusers import CogVideoXTransformer3DModel

    config = diffusers_config(network_config)
    with torch.device("meta"):
        reference = CogVideoXTransformer3DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
        sat = diffusers_to_sat_state_dict(reference.state_dict(), config)
    return {key: value.shape for key, value in sat.items()}


def check_checkpoint_family(state_dict: Mapping[str, torch.Tensor], network_config: Mapping[str, Any], source: str,
                            config_path: str) -> None:
    """InputError naming `source`, `config_path` and the first keys when the DiT state dict `state_dict` (no
    prefix; LoRA layers' `.original.` weights count as the plain ones) has keys the config's model lacks, lacks
    keys it has (beyond `OPTIONAL_KEYS`), or holds tensors of other shapes."""
    expected = expected_sat_shapes(network_config)
    plain = {key.replace(".original.", "."): value for key, value in state_dict.items() if not is_lora_key(key)}
    file_family = dit_family(plain)
    model_family = dit_family({key: torch.empty(shape, device="meta") for key, shape in expected.items()})
    if file_family and model_family and file_family != model_family:  # as sampling says it (checkpoint_shapes)
        raise InputError(f"{source}: a {file_family} checkpoint, but {config_path} describes a {model_family} DiT; "
                         "give the config of the checkpoint's family")
    unexpected = [key for key in plain if key not in expected]
    missing = [key for key in expected if key not in plain and key not in OPTIONAL_KEYS]
    if unexpected or missing:
        parts = [f"{len(keys)} key(s) {what}: {keys[:SHOWN_KEYS]}"
                 for keys, what in ((unexpected, "not in that model"), (missing, "of that model missing")) if keys]
        raise InputError(f"{source} is not a checkpoint of the model {config_path} describes (another model family?): "
                         + "; ".join(parts))
    check_shapes(source, plain, {key: torch.empty(shape, device="meta") for key, shape in expected.items()})
