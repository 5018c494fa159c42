"""The image latent of image-to-video sampling, as diffusers' pipelines feed it: the family rule that decides a VAE
config's ``invert_scale_latents`` and the config's sampling scale, shared by the pipeline export and import tools."""

import math
from typing import Any, Mapping

from omegaconf import OmegaConf

from model_family import COGVIDEOX_1_5, model_family

# diffusers' ofs input of a CogVideoX1.5-I2V transformer (pipeline_cogvideox_image2video.py: new_full((1,), 2.0)).
DIFFUSERS_OFS = 2.0


def is_cogvideox_15(model: Mapping[str, Any]) -> bool:
    """Whether the network is CogVideoX1.5's (``patch_size: [2, p, p]``), whose released pipelines' VAE config sets
    ``invert_scale_latents: true`` (1.0's: false, diffusers' default)."""
    return model_family(OmegaConf.create({"network_config": model["network_config"]})) is COGVIDEOX_1_5


def image_latent_sampling_scale(model: Mapping[str, Any]) -> float:
    """The I2V sampling image latent as a multiple of z, resolved as the engine does (diffusion_video.py):
    ``model.image_latent_sampling_scale``, else the family's (model_family.py), else ``scale_factor``."""
    scale = model.get("image_latent_sampling_scale")
    if scale is None:
        scale = model_family(OmegaConf.create({"network_config": model["network_config"]})).image_latent_sampling_scale
    return float(model["scale_factor"] if scale is None else scale)


def invert_scale_latents(model: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(the VAE config's ``invert_scale_latents``, a note when diffusers cannot feed the config's I2V image latent)."""
    released = is_cogvideox_15(model)
    if not model.get("noised_image_input", False):
        return released, None  # only the image-to-video pipeline reads it
    scale_factor, scale = float(model["scale_factor"]), image_latent_sampling_scale(model)
    if math.isclose(scale, scale_factor):
        return False, None
    if math.isclose(scale, 1 / scale_factor):
        return True, None
    theirs = f"z / {scale_factor:g}" if released else f"{scale_factor:g} z"
    return released, (f"the config samples the image latent as {scale:g} z (z: the VAE posterior sample); diffusers' "
                      f"CogVideoXImageToVideoPipeline feeds {theirs} (invert_scale_latents: {str(released).lower()}, as "
                      f"the released pipelines), so videos differ; model.image_latent_sampling_scale: "
                      f"{(1 / scale_factor if released else scale_factor)!r} samples as diffusers does")
