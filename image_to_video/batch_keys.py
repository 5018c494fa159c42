"""The keys that carry the image-to-video condition, and CogVideoX1.5-I2V's ofs value, through a training batch and
the network's conditioning dicts (`cond`, `uc`): named once here, used by the engine, the loss, the network wrapper,
the conditioner and sampling."""

CONCAT_BATCH_KEY = "concat_images"  # batch: the image latents (b, t, c, h, w) of I2V training, as the reference
CONCAT_COND_KEY = "concat"  # cond / uc: latents the wrapper concatenates to the noisy ones on the channel axis
OFS_BATCH_KEY = "ofs"  # batch: CogVideoX1.5-I2V's ofs value (b,), set by the engine
OFS_COND_KEY = "ofs"  # cond / uc: the ofs value the wrapper passes to the DiT's ofs embedding
