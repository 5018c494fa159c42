"""The CogVideoX noise schedule: a DDPM schedule with shifted SNR and zero terminal SNR.

Everything here is expressed in ``sqrt(alphas_cumprod)`` (the signal scale ``a_t`` of
``x_t = a_t x_0 + sqrt(1 - a_t^2) eps``), indexed by the DDPM step ``t`` in 0..999.

1. betas linear in sqrt(beta) from ``linear_start`` to ``linear_end`` (SD's "linear" schedule).
2. SNR shift (CogVideoX paper, sec. 3.3): ``ac -> ac / (s + (1 - s) ac)``, i.e. logSNR - log(s).
3. Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
   Flawed", Alg. 1): ``sqrt(ac)`` is shifted and scaled so the last step is exactly 0 and the
   first is unchanged.
"""

import numpy as np
import torch

from sgm.util import ConfigError


def linear_sqrt_betas(linear_start: float, linear_end: float, num_timesteps: int) -> torch.Tensor:
    """(num_timesteps,) float64 betas whose square roots are evenly spaced."""
    return torch.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def spaced_step_indices(num_steps: int, num_timesteps: int) -> torch.Tensor:
    """(num_steps,) int64 DDPM indices, ascending: ``linspace(T - 1, 0, n, endpoint=False)`` floored.

    For n = 50 of 1000: 19, 39, ..., 979, 999 (the same as diffusers' "trailing" spacing whenever n
    divides 1000).
    """
    steps = np.linspace(num_timesteps - 1, 0, num_steps, endpoint=False).astype(np.int64)[::-1].copy()
    return torch.from_numpy(steps)


def rescale_to_zero_terminal_snr(alphas_cumprod_sqrt: torch.Tensor) -> torch.Tensor:
    """Affine map of a (n,) ascending-index ``sqrt(ac)`` so entry -1 becomes 0 and entry 0 is kept."""
    first, last = alphas_cumprod_sqrt[0].clone(), alphas_cumprod_sqrt[-1].clone()
    return (alphas_cumprod_sqrt - last) * (first / (first - last))


class ZeroSNRDDPMDiscretization:
    """``sqrt(alphas_cumprod)`` of the shifted, zero-terminal-SNR DDPM schedule.

    ``rescale_selected_steps=True`` matches the reference: when sampling with n < num_timesteps
    steps, the zero-SNR rescale is applied to the *selected* steps only, so its anchor is the
    smallest selected index (19 for 50 steps) instead of step 0. The sampling schedule then differs
    from the 1000-entry table (the one training and the denoiser use, and the one diffusers samples
    with) by up to 1e-3 (50 steps) / 6e-3 (10 steps). ``False`` rescales the full table first and
    then selects, which is diffusers' behaviour.
    """

    def __init__(
        self,
        shift_scale: float = 1.0,  # the reference's default: the released CogVideoX1.5 configs set no params here
        linear_start: float = 0.00085,
        linear_end: float = 0.012,
        num_timesteps: int = 1000,
        rescale_selected_steps: bool = True,
    ):
        if shift_scale <= 0:
            raise ConfigError(f"ZeroSNRDDPMDiscretization: shift_scale must be > 0, got {shift_scale}")
        self.num_timesteps = num_timesteps
        self.rescale_selected_steps = rescale_selected_steps
        alphas_cumprod = torch.cumprod(1.0 - linear_sqrt_betas(linear_start, linear_end, num_timesteps), dim=0)
        # SNR shift in float64; the reference casts to float32 only afterwards.
        self.shifted_alphas_cumprod = alphas_cumprod / (shift_scale + (1 - shift_scale) * alphas_cumprod)

    def step_indices(self, num_steps: int) -> torch.Tensor:
        """(num_steps,) int64 DDPM indices used by an n-step sampler, ascending."""
        if not 1 <= num_steps <= self.num_timesteps:
            raise ConfigError(f"num_steps must be in [1, {self.num_timesteps}], got {num_steps}")
        if num_steps == self.num_timesteps:
            return torch.arange(self.num_timesteps)
        return spaced_step_indices(num_steps, self.num_timesteps)

    def table(self) -> torch.Tensor:
        """(num_timesteps,) float32 ``sqrt(alphas_cumprod)`` indexed by DDPM step: 0.9987 ... 0."""
        return rescale_to_zero_terminal_snr(self.shifted_alphas_cumprod.float().sqrt())

    def __call__(self, num_steps: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The n-step sampling schedule, noisiest step first, computed in float32 on ``device`` (as the reference).

        Returns ``alphas_cumprod_sqrt`` (num_steps,) float32 on ``device``, starting at exactly 0, and the DDPM
        indices (num_steps,) int64 they belong to (999 first).
        """
        steps = self.step_indices(num_steps)
        if self.rescale_selected_steps:
            selected = self.shifted_alphas_cumprod[steps].float().to(device)
            alphas_cumprod_sqrt = rescale_to_zero_terminal_snr(selected.sqrt())
        else:
            alphas_cumprod_sqrt = self.table()[steps].to(device)
        return alphas_cumprod_sqrt.flip(0), steps.flip(0)
