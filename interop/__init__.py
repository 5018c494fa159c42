"""SAT <-> diffusers: the transformer key maps (`sat_to_diffusers`, `diffusers_to_sat`), the VAE key maps
(`vae_keys`), the sampler <-> scheduler mapping (`diffusers_scheduler`) and the check that a checkpoint belongs to
the model a config describes (`checkpoint_family`). The command-line scripts in tools/ use this library."""
