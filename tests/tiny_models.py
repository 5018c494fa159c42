"""The tiny model set of `tools/make_tiny_weights.py`, written to a temp folder, and engines built on it."""

import argparse
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from diffusion_video import SATVideoDiffusionEngine
from checkpoints.sat_checkpoint import load_sat_checkpoint
from tiny.weights import make_tiny_weights

TINY_CONFIG = "configs/tiny/cogvideox_tiny.yaml"
TINY_I2V_CONFIG = "configs/tiny/cogvideox_tiny_i2v.yaml"
TINY_5B_CONFIG = "configs/tiny/cogvideox_tiny_5b.yaml"
TINY_15_CONFIG = "configs/tiny/cogvideox1.5_tiny.yaml"
TINY_15_I2V_CONFIG = "configs/tiny/cogvideox1.5_tiny_i2v.yaml"


@dataclass(frozen=True)
class TinyModelSet:
    root: Path
    config_path: str = TINY_CONFIG  # the tiny config the weights were made for

    @property
    def transformer(self) -> Path:
        return self.root / "transformer"

    @property
    def vae(self) -> Path:
        return self.root / "vae" / "3d-vae.pt"

    @property
    def t5(self) -> Path:
        return self.root / "t5"

    def model_config(self, config_path: str | None = None):
        """The tiny `model:` section (of this set's config unless given) with the weight paths pointing into this set."""
        config = OmegaConf.load(config_path or self.config_path).model
        config.first_stage_config.params.ckpt_path = str(self.vae)
        config.conditioner_config.params.emb_models[0].params.model_dir = str(self.t5)
        return config

    def write_config(self, path: Path, config_path: str | None = None) -> Path:
        OmegaConf.save(OmegaConf.create({"model": self.model_config(config_path)}), path)
        return path


def make_tiny_model_set(root: Path, seed: int = 0, config_path: str = TINY_CONFIG) -> TinyModelSet:
    make_tiny_weights(config_path, str(root), seed)
    return TinyModelSet(Path(root), config_path)


def build_engine(models: TinyModelSet, model_config=None) -> SATVideoDiffusionEngine:
    """An fp32 engine on the CPU with the tiny transformer checkpoint loaded, in eval mode."""
    args = argparse.Namespace(model_config=model_config or models.model_config(), fp16=False, bf16=False)
    engine = SATVideoDiffusionEngine(args)
    load_sat_checkpoint(engine, str(models.transformer))
    return engine.eval()
