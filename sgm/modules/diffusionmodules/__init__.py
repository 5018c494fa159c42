"""Diffusion core: noise schedule, denoiser, step sampling, guidance, samplers and the training loss."""
