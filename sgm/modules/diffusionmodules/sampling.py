"""Video samplers in the VP (alpha) parameterisation: DDIM and DPM-Solver++(2M), ODE and SDE.

Shared call: ``sampler(denoiser, x, cond, uc=None, generator=None)`` where
- ``x`` (b, t, c, h, w) is the initial unit Gaussian noise (the schedule starts at zero SNR, so
  it is not rescaled),
- ``denoiser(x, alpha_cumprod_sqrt, cond, idx=idx)`` returns the x_0 estimate (a closure over the
  network, e.g. ``DiscreteDenoiser`` bound to the model), with alpha and idx of shape (batch,),
- ``uc`` is the unconditional input for guidance (the conditional one if None, as the reference),
- every further random draw is ``torch.randn(..., generator=generator)`` (the global RNG of x's
  device if None), in the reference's order.

Notation per step i of n (noisiest first): ``a = sqrt(alphas_cumprod)`` at the current DDPM index,
``a_next`` at the next one (1 after the last), ``lam = log(a / sqrt(1 - a^2))`` (half log-SNR),
``h = lam_next - lam``.
"""

from typing import Callable

import torch
from tqdm import tqdm

from sgm.util import ConfigError, instantiate_from_config

from .guiders import IdentityGuider

# denoiser(x (b, t, c, h, w), alpha_cumprod_sqrt (b,), cond, idx=(b,) int64) -> x_0 estimate (b, t, c, h, w)
DenoiserFn = Callable[..., torch.Tensor]


def half_log_snr(alpha_cumprod_sqrt: torch.Tensor) -> torch.Tensor:
    """lambda = log(a / sqrt(1 - a^2)); -inf at a = 0 (zero SNR), +inf at a = 1."""
    alpha_cumprod = alpha_cumprod_sqrt**2
    return ((alpha_cumprod / (1 - alpha_cumprod)) ** 0.5).log()


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Unit Gaussian shaped like ``x``, drawn from ``generator`` (on its device) or x's device's global RNG."""
    device = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


class VideoDDIMSampler:
    """Deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"), eta = 0.

    ``x_next = s x + (a_next - a s) D`` with ``s = sqrt((1 - a_next^2) / (1 - a^2))`` and ``D`` the
    x_0 estimate. Draws no random numbers.

    The loop here is shared by all samplers: the last step returns the x_0 estimate (for DDIM that is
    its own update with a_next = 1), every other step calls ``update``.
    """

    def __init__(
        self,
        num_steps: int,
        discretization_config: dict,
        guider_config: dict | None = None,
        verbose: bool = False,
        fixed_frames: int = 0,
        device: str | None = None,
    ):
        """``fixed_frames``: set to 0 by the released I2V configs, where it has no effect; only 0 is accepted.
        ``device``: matches the reference, where the schedule is computed on it (the reference's default is
        "cuda"); None computes it on the latents' device, which is "cuda" wherever the reference runs."""
        if fixed_frames != 0:
            raise ConfigError(f"sampler fixed_frames: only 0 is supported (the released I2V configs' value), got {fixed_frames}")
        self.num_steps = num_steps
        self.discretization = instantiate_from_config(discretization_config)
        self.guider = IdentityGuider() if guider_config is None else instantiate_from_config(guider_config)
        self.guider.check_sampler(num_steps, int(self.discretization.step_indices(num_steps).max()))
        self.verbose = verbose
        self.device = None if device is None else torch.device(device)

    def schedule(self, device: torch.device) -> tuple[torch.Tensor, list[int]]:
        """alphas_cumprod_sqrt (num_steps + 1,) with a final 1 appended, and the DDPM indices, noisiest first."""
        alphas_cumprod_sqrt, timesteps = self.discretization(self.num_steps, device=self.device or device)
        alphas_cumprod_sqrt = torch.cat((alphas_cumprod_sqrt, alphas_cumprod_sqrt.new_ones(1))).to(device)
        return alphas_cumprod_sqrt, timesteps.tolist()

    def denoise(
        self, denoiser: DenoiserFn, x: torch.Tensor, alpha: torch.Tensor, timestep: int, step: int, cond: dict, uc: dict
    ) -> torch.Tensor:
        """Guided x_0 estimate (b, t, c, h, w) at DDPM index ``timestep``; ``alpha`` is a 0-d tensor."""
        batch = x.shape[0]
        alphas = alpha.expand(batch)  # (b,)
        idx = torch.full((batch,), timestep, dtype=torch.long, device=x.device)  # (b,)
        x_in, alphas_in, idx_in, cond_in = self.guider.prepare_inputs(x, alphas, idx, cond, uc)
        denoised = denoiser(x_in, alphas_in, cond_in, idx=idx_in).to(torch.float32)  # (b or 2b, t, c, h, w)
        return self.guider(denoised, timestep, step, self.num_steps)

    def update(
        self,
        x: torch.Tensor,
        denoised: torch.Tensor,
        old_denoised: torch.Tensor | None,
        alphas: torch.Tensor,
        step: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One step from ``alphas[step]`` to ``alphas[step + 1]``; x, denoised: (b, t, c, h, w)."""
        a, a_next = alphas[step], alphas[step + 1]
        noise_ratio = ((1 - a_next**2) / (1 - a**2)) ** 0.5
        return noise_ratio * x + (a_next - a * noise_ratio) * denoised

    def __call__(
        self,
        denoiser: DenoiserFn,
        x: torch.Tensor,
        cond: dict,
        uc: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x: (b, t, c, h, w) initial noise -> (b, t, c, h, w) sample."""
        uc = cond if uc is None else uc
        alphas, timesteps = self.schedule(x.device)
        steps = range(self.num_steps)
        old_denoised = None
        for i in tqdm(steps, desc=f"{type(self).__name__}, {self.num_steps} steps") if self.verbose else steps:
            denoised = self.denoise(denoiser, x, alphas[i], timesteps[i], i, cond, uc)
            last = i == self.num_steps - 1
            x = denoised if last else self.update(x, denoised, old_denoised, alphas, i, generator)
            old_denoised = denoised
        return x


def second_order_denoised(
    denoised: torch.Tensor, old_denoised: torch.Tensor | None, alphas: torch.Tensor, step: int
) -> torch.Tensor:
    """DPM-Solver++(2M)'s multistep estimate ``(1 + 1/2r) D - 1/2r D_old``, ``r = h_last / h``; D on the first step."""
    if old_denoised is None:
        return denoised
    lam_prev, lam, lam_next = (half_log_snr(alphas[k]) for k in (step - 1, step, step + 1))
    r = (lam - lam_prev) / (lam_next - lam)
    return (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old_denoised


class VPODEDPMPP2MSampler(VideoDDIMSampler):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2) for the probability-flow ODE.

    ``x_next = sqrt((1 - a_next^2) / (1 - a^2)) x - a_next (e^-h - 1) D2`` with ``D2`` from
    ``second_order_denoised`` (first order on the first step); the last step returns the x_0
    estimate. Draws no random numbers.
    """

    def update(self, x, denoised, old_denoised, alphas, step, generator):
        a, a_next = alphas[step], alphas[step + 1]
        h = half_log_snr(a_next) - half_log_snr(a)
        x_scale = ((1 - a_next**2) / (1 - a**2)) ** 0.5
        denoised_scale = (-h).expm1() * a_next
        return x_scale * x - denoised_scale * second_order_denoised(denoised, old_denoised, alphas, step)


class VPSDEDPMPP2MSampler(VideoDDIMSampler):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++"; k-diffusion's dpmpp_2m_sde, midpoint) in alpha form.

    ``x_next = sqrt((1 - a_next^2) / (1 - a^2)) e^-h x - a_next (e^-2h - 1) D2
    + sqrt(1 - a_next^2) sqrt(1 - e^-2h) z`` with ``D2`` from ``second_order_denoised``; the last step
    returns the x_0 estimate.

    RNG (matches the reference): one draw on the first step, two on every middle step of which the
    first is discarded (the reference draws it for a first-order candidate it never uses), none on
    the last step: 2n - 3 draws for n steps.
    """

    def update(self, x, denoised, old_denoised, alphas, step, generator):
        a, a_next = alphas[step], alphas[step + 1]
        h = half_log_snr(a_next) - half_log_snr(a)
        x_scale = ((1 - a_next**2) / (1 - a**2)) ** 0.5 * (-h).exp()
        denoised_scale = (-2 * h).expm1() * a_next
        noise_scale = (1 - a_next**2) ** 0.5 * (1 - (-2 * h).exp()) ** 0.5
        noise = randn_like(x, generator)
        if old_denoised is not None:
            noise = randn_like(x, generator)  # matches the reference: the first draw is discarded
        denoised_2 = second_order_denoised(denoised, old_denoised, alphas, step)
        return x_scale * x - denoised_scale * denoised_2 + noise_scale * noise
