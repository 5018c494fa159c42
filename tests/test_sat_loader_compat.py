"""Checkpoints we write stay readable by SAT's own loader (`sat.training.model_io.load_checkpoint`)."""

import argparse

import pytest
import torch
from sat.training.model_io import load_checkpoint

from diffusion_video import SATVideoDiffusionEngine
from tiny_models import build_engine


@pytest.mark.parametrize("model_set", ["tiny_models", "tiny_i2v_models"])
def test_sat_loader_reads_our_transformer_checkpoint(model_set, request):
    """2B-style, and 5B-I2V-style with its rotary buffers and learned table."""
    models = request.getfixturevalue(model_set)
    ours = build_engine(models)  # loaded by sat_checkpoint.load_sat_checkpoint
    args = argparse.Namespace(model_config=models.model_config(), fp16=False, bf16=False)
    fresh = SATVideoDiffusionEngine(args)
    before = {key: value.clone() for key, value in fresh.model.state_dict().items()}
    sat_args = argparse.Namespace(load=str(models.transformer), mode="inference", force_inference=True)
    iteration = load_checkpoint(fresh, sat_args)
    assert iteration == 1
    loaded, expected = fresh.model.state_dict(), ours.model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    assert any(not torch.equal(before[key], expected[key]) for key in expected)  # the load changed the weights
    if model_set == "tiny_i2v_models":
        assert "diffusion_model.mixins.pos_embed.freqs_sin" in loaded
        assert torch.count_nonzero(loaded["diffusion_model.mixins.pos_embed.pos_embedding"]) > 0
