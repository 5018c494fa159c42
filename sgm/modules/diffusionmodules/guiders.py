"""Classifier-free guidance (Ho & Salimans 2022) on the x_0 estimate, batched as [unconditional; conditional]."""

import math

import torch

from sgm.util import ConfigError


def _batch_conditions(cond: dict, uc: dict) -> dict:
    """Each tensor entry becomes cat([uc[k], cond[k]]) on the batch axis; other entries must agree."""
    missing = sorted(set(cond) - set(uc))
    if missing:
        raise ValueError(f"the unconditional input lacks key(s) {missing} present in the condition")
    batched = {}
    for key, value in cond.items():
        if isinstance(value, torch.Tensor):
            batched[key] = torch.cat((uc[key], value), dim=0)
        elif value == uc[key]:
            batched[key] = value
        else:
            raise ValueError(f"non-tensor condition {key!r} differs between cond ({value!r}) and uc ({uc[key]!r})")
    return batched


class IdentityGuider:
    """No guidance: one conditional forward."""

    def prepare_inputs(
        self, x: torch.Tensor, alpha_cumprod_sqrt: torch.Tensor, idx: torch.Tensor, cond: dict, uc: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        return x, alpha_cumprod_sqrt, idx, cond

    def check_sampler(self, sampler_steps: int, largest_timestep: int) -> None:
        """Nothing to check: no schedule."""

    def for_last_steps(self, steps: int, sampler_steps: int) -> "IdentityGuider":
        """The guider of a run of the last `steps` of `sampler_steps` (schedule_tail.py): the same."""
        return self

    def __call__(self, denoised: torch.Tensor, timestep: int, step: int, sampler_steps: int) -> torch.Tensor:
        return denoised


class VanillaCFG:
    """``u + scale * (c - u)`` with a constant scale; both halves in one forward of batch 2b."""

    def __init__(self, scale: float):
        self.scale = scale

    def prepare_inputs(
        self, x: torch.Tensor, alpha_cumprod_sqrt: torch.Tensor, idx: torch.Tensor, cond: dict, uc: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """x (b, t, c, h, w), alpha (b,), idx (b,) -> doubled to 2b as [unconditional; conditional]."""
        doubled = (torch.cat((tensor, tensor)) for tensor in (x, alpha_cumprod_sqrt, idx))
        return *doubled, _batch_conditions(cond, uc)

    def check_sampler(self, sampler_steps: int, largest_timestep: int) -> None:
        """Nothing to check: the scale is constant."""

    def for_last_steps(self, steps: int, sampler_steps: int) -> "VanillaCFG":
        """The guider of a run of the last `steps` of `sampler_steps` (schedule_tail.py): the same constant scale."""
        return self

    def scale_at(self, timestep: int, step: int, sampler_steps: int) -> float:
        """Guidance scale at DDPM index ``timestep``, sampler step ``step`` (0-based) of ``sampler_steps``."""
        return self.scale

    def __call__(self, denoised: torch.Tensor, timestep: int, step: int, sampler_steps: int) -> torch.Tensor:
        """denoised (2b, ...) as [unconditional; conditional] -> guided (b, ...)."""
        unconditional, conditional = denoised.chunk(2)
        return unconditional + self.scale_at(timestep, step, sampler_steps) * (conditional - unconditional)


class DynamicCFG(VanillaCFG):
    """CFG whose scale follows ``1 + scale * (1 - cos(pi * (k / num_steps) ** exp)) / 2`` (CogVideoX).

    ``schedule_input="ddpm_index"`` matches the reference: ``k = sampler_steps - timestep`` with ``timestep`` the
    DDPM index (999, 979, ...) and ``sampler_steps`` the *sampler's* step count, divided by the *guider's*
    ``num_steps``; ``k`` is mostly negative and the scale jumps between about 1 and 1 + scale from step to step
    (diffusers: docs/faithfulness.md). ``schedule_input="step_counter"`` uses ``k = step`` (0, 1, ..., n - 1), the
    intended ramp from 1 up to about 1 + scale. With ``ddpm_index`` a fractional ``exp`` (a complex power of a
    negative ``k``) is refused when the sampler is built (``check_sampler``); the reference fails mid-sampling.
    """

    schedule_inputs = ("ddpm_index", "step_counter")

    def __init__(self, scale: float, exp: float, num_steps: int, schedule_input: str = "ddpm_index"):
        super().__init__(scale)
        if schedule_input not in self.schedule_inputs:
            raise ConfigError(f"DynamicCFG: schedule_input must be one of {self.schedule_inputs}, got {schedule_input!r}")
        self.exp = exp
        self.num_steps = num_steps
        self.schedule_input = schedule_input

    def check_sampler(self, sampler_steps: int, largest_timestep: int) -> None:
        """A fractional ``exp`` needs ``k = sampler_steps - timestep >= 0`` at every step."""
        fractional = not float(self.exp).is_integer()
        if self.schedule_input == "ddpm_index" and fractional and sampler_steps < largest_timestep:
            raise ConfigError(
                f"DynamicCFG: exp={self.exp} must be an integer: with schedule_input='ddpm_index' the schedule "
                f"raises k = {sampler_steps} (sampler steps) - {largest_timestep} (DDPM index) < 0 to the power exp"
            )

    def for_last_steps(self, steps: int, sampler_steps: int) -> "DynamicCFG":
        """The guider of a run of the last `steps` of `sampler_steps` (schedule_tail.py, video-to-video): its
        `num_steps` scaled by steps / sampler_steps, i.e. `steps` when the guider's count is the sampler's (every
        released config). Matches diffusers' CogVideoXVideoToVideoPipeline, whose dynamic CFG uses the reduced step
        count int(n x strength) for both of its counts (the sampler sees `steps` too)."""
        return DynamicCFG(self.scale, self.exp, self.num_steps * steps / sampler_steps, self.schedule_input)

    def scale_at(self, timestep: int, step: int, sampler_steps: int) -> float:
        k = sampler_steps - timestep if self.schedule_input == "ddpm_index" else step
        return 1 + self.scale * (1 - math.cos(math.pi * (k / self.num_steps) ** self.exp)) / 2
