"""The diffusers scheduler that reproduces a SAT config's sampler, and the way back: one place for both.

``VPSDEDPMPP2MSampler`` (the released configs) maps to ``CogVideoXDPMScheduler``, ``VideoDDIMSampler`` to
``CogVideoXDDIMScheduler``; ``ZeroSNRDDPMDiscretization`` to ``scaled_linear`` betas from ``linear_start`` /
``linear_end`` (linear in sqrt(beta), as SAT), ``snr_shift_scale`` = ``shift_scale``, ``rescale_betas_zero_snr``,
v-prediction, ``trailing`` spacing. What diffusers cannot express (the zero-SNR rescale over the selected steps; the
step counts where ``trailing`` picks other DDPM indices than SAT's, ``spacing_agrees``): docs/converting.md,
"Exporting to and importing from diffusers".
"""

from typing import Any, Mapping

import numpy as np

from sgm.modules.diffusionmodules.discretizer import spaced_step_indices
from sgm.util import ConfigError

SAMPLING = "sgm.modules.diffusionmodules.sampling."
DISCRETIZATION = "sgm.modules.diffusionmodules.discretizer.ZeroSNRDDPMDiscretization"
SCHEDULER_OF_SAMPLER = {
    f"{SAMPLING}VPSDEDPMPP2MSampler": "CogVideoXDPMScheduler",
    f"{SAMPLING}VideoDDIMSampler": "CogVideoXDDIMScheduler",
}
SAMPLER_OF_SCHEDULER = {scheduler: sampler for sampler, scheduler in SCHEDULER_OF_SAMPLER.items()}
# The fixed part of the CogVideoX-2b / -5b releases' scheduler/scheduler_config.json (diffusers' conversion script,
# scripts/convert_cogvideox_to_diffusers.py): what every CogVideoX scheduler shares with the SAT sampler.
FIXED = dict(
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    set_alpha_to_one=True,
    steps_offset=0,
    clip_sample=False,
)
# ZeroSNRDDPMDiscretization's defaults (sgm/modules/diffusionmodules/discretizer.py), which the released configs keep
# (the CogVideoX1.5 configs set no params at all: shift_scale 1.0).
DEFAULT_DISCRETIZATION = {"linear_start": 0.00085, "linear_end": 0.012, "num_timesteps": 1000, "shift_scale": 1.0}


def scheduler_config(discretization: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers' CogVideoX scheduler arguments for a ``ZeroSNRDDPMDiscretization`` params mapping."""
    params = {**DEFAULT_DISCRETIZATION, **discretization}
    return dict(
        num_train_timesteps=int(params["num_timesteps"]),
        beta_start=float(params["linear_start"]),
        beta_end=float(params["linear_end"]),
        snr_shift_scale=float(params["shift_scale"]),
        **FIXED,
    )


def scheduler_for_sampler(sampler_config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(diffusers scheduler class name, its arguments) for a SAT ``model.sampler_config`` (plain mapping)."""
    target = sampler_config["target"]
    if target not in SCHEDULER_OF_SAMPLER:
        raise ConfigError(f"model.sampler_config.target: {target!r} has no diffusers scheduler (expected one of {sorted(SCHEDULER_OF_SAMPLER)})")
    discretization = sampler_config["params"]["discretization_config"]
    if discretization["target"] != DISCRETIZATION:
        raise ConfigError(f"model.sampler_config.params.discretization_config.target: {discretization['target']!r} "
                          f"has no diffusers counterpart (expected {DISCRETIZATION})")
    return SCHEDULER_OF_SAMPLER[target], scheduler_config(discretization.get("params") or {})


def build_scheduler(class_name: str, config: Mapping[str, Any]):
    """The diffusers scheduler object."""
    import diffusers

    return getattr(diffusers, class_name)(**config)


def discretization_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``scheduler_config``: ``ZeroSNRDDPMDiscretization`` params from a diffusers scheduler config,
    which must carry the fixed CogVideoX settings (else ConfigError naming the key)."""
    for key, value in FIXED.items():
        if config.get(key) != value:
            raise ConfigError(f"scheduler config: {key} is {config.get(key)!r}; a CogVideoX schedule has {value!r}")
    params = {"shift_scale": float(config["snr_shift_scale"])}
    found = {"linear_start": config["beta_start"], "linear_end": config["beta_end"], "num_timesteps": config["num_train_timesteps"]}
    params.update({key: value for key, value in found.items() if value != DEFAULT_DISCRETIZATION[key]})
    return params


def diffusers_step_indices(num_steps: int, num_timesteps: int = 1000) -> np.ndarray:
    """DDPM indices diffusers' ``trailing`` spacing visits, noisiest first (its ``set_timesteps`` formula)."""
    return np.round(np.arange(num_timesteps, 0, -num_timesteps / num_steps)).astype(np.int64) - 1


def spacing_agrees(num_steps: int, num_timesteps: int = 1000) -> bool:
    """Whether diffusers' ``trailing`` spacing visits the DDPM indices SAT's sampler does at ``num_steps`` steps."""
    ours = spaced_step_indices(num_steps, num_timesteps).numpy()[::-1]
    theirs = diffusers_step_indices(num_steps, num_timesteps)
    return len(ours) == len(theirs) and bool((ours == theirs).all())
