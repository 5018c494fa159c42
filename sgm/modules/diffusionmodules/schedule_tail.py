"""SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations"):
noise a clean latent to a step part-way down the sampling schedule and run only the steps left.

As diffusers' CogVideoXVideoToVideoPipeline: `strength` S keeps the last min(int(n S), n) of the sampler's n steps
(`get_timesteps`); the clean latent is noised to the first kept step, `a x_0 + sqrt(1 - a^2) eps`
(`scheduler.add_noise`); the kept steps are those of the n-step schedule, run by the same sampler update rule, its
multistep history starting empty (first order on the first kept step); the guidance sees a run of the kept steps.
S = 1 keeps every step, whose first `a` is exactly 0: the noised latent is the noise itself.
"""

import copy

import torch


def first_kept_step(num_steps: int, strength: float) -> int:
    """The index of the first of the n steps a run at `strength` keeps: n - min(int(n S), n) (diffusers'
    `get_timesteps`: n = 50, S = 0.8 -> 10, 40 steps run). ValueError where S is outside (0, 1] or keeps no step."""
    kept = min(int(num_steps * strength), num_steps)
    if not 0 < strength <= 1 or kept == 0:
        raise ValueError(f"strength {strength} keeps {kept} of {num_steps} steps; expected 0 < strength <= 1 with "
                         f"int({num_steps} x strength) >= 1")
    return num_steps - kept


class ScheduleTail:
    """The discretization of the last steps of an n-step schedule: entries `start_step`.. of what `discretization`
    gives for n steps (noisiest first)."""

    def __init__(self, discretization, num_steps: int, start_step: int):
        self.discretization, self.num_steps, self.start_step = discretization, num_steps, start_step

    def step_indices(self, kept_steps: int) -> torch.Tensor:
        """(kept_steps,) int64 DDPM indices of the kept steps, ascending (as `ZeroSNRDDPMDiscretization`)."""
        self._check(kept_steps)
        return self.discretization.step_indices(self.num_steps)[: self.num_steps - self.start_step]

    def __call__(self, kept_steps: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """alphas_cumprod_sqrt (kept_steps,) and DDPM indices (kept_steps,) of the kept steps, noisiest first."""
        self._check(kept_steps)
        alphas_cumprod_sqrt, timesteps = self.discretization(self.num_steps, device=device)
        return alphas_cumprod_sqrt[self.start_step :], timesteps[self.start_step :]

    def _check(self, kept_steps: int) -> None:
        if kept_steps != self.num_steps - self.start_step:
            raise ValueError(f"this tail holds {self.num_steps - self.start_step} steps, {kept_steps} asked")


def tail_sampler(sampler, start_step: int):
    """A copy of `sampler` that runs its steps `start_step`.. n - 1 (same update rule, tail of the same schedule),
    guided as a run of that many steps (`guider.for_last_steps`); `start_step` 0 gives the sampler's own run."""
    if not 0 <= start_step < sampler.num_steps:
        raise ValueError(f"start_step {start_step} is outside the sampler's {sampler.num_steps} steps")
    tail = copy.copy(sampler)
    tail.num_steps = sampler.num_steps - start_step
    tail.discretization = ScheduleTail(sampler.discretization, sampler.num_steps, start_step)
    tail.guider = sampler.guider.for_last_steps(tail.num_steps, sampler.num_steps)
    tail.guider.check_sampler(tail.num_steps, int(tail.discretization.step_indices(tail.num_steps).max()))
    return tail


def noised_to(x0: torch.Tensor, noise: torch.Tensor, alpha_cumprod_sqrt: torch.Tensor) -> torch.Tensor:
    """`a x_0 + sqrt(1 - a^2) eps` for the 0-d signal scale `a` (diffusers' `add_noise`); x0, noise: (b, t, c, h, w)."""
    return alpha_cumprod_sqrt * x0 + (1 - alpha_cumprod_sqrt**2) ** 0.5 * noise
