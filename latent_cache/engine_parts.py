"""What the engine builds when its inputs come from latent caches: no T5, no VAE encoder.

- conditioner: each frozen text embedder is replaced by `PrecomputedEmbedding` (the batch holds its output); the
  entry's `input_key` and `ucg_rate` stay, so the dropout draw is the same;
- first stage: none, or the VAE decoder alone when validation writes decoded videos.
"""

import copy

from omegaconf import OmegaConf

PRECOMPUTED_EMBEDDING = "sgm.modules.encoders.precomputed.PrecomputedEmbedding"


def conditioner_config(config, precomputed):
    """`config.conditioner_config`, or with every embedder read from the batch when `precomputed`."""
    if precomputed is None:
        return config.conditioner_config
    node = OmegaConf.to_container(config.conditioner_config, resolve=True)
    node["params"]["emb_models"] = [{**{k: v for k, v in entry.items() if k != "params"},
                                     "target": PRECOMPUTED_EMBEDDING} for entry in node["params"]["emb_models"]]
    return node


def first_stage_config(config, precomputed):
    """`config.first_stage_config`; with `precomputed`: None, or the decoder alone when videos are decoded."""
    if precomputed is None:
        return config.first_stage_config
    if not precomputed.decode_videos:
        return None
    node = copy.deepcopy(OmegaConf.to_container(config.first_stage_config, resolve=True))
    node["params"]["encoder_config"] = None
    return node
