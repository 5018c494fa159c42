"""Diffusion side of the CogVideoX framework: config construction (``sgm.util``) and modules."""
