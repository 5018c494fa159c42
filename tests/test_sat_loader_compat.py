"""Checkpoints we write stay readable by SAT's own loader (`sat.training.model_io.load_checkpoint`)."""

import argparse

import torch
from sat.training.model_io import load_checkpoint

from diffusion_video import SATVideoDiffusionEngine
from tiny_models import build_engine


def test_sat_loader_reads_our_transformer_checkpoint(tiny_models):
    ours = build_engine(tiny_models)  # loaded by sat_checkpoint.load_sat_checkpoint
    args = argparse.Namespace(model_config=tiny_models.model_config(), fp16=False, bf16=False)
    fresh = SATVideoDiffusionEngine(args)
    before = {key: value.clone() for key, value in fresh.model.state_dict().items()}
    sat_args = argparse.Namespace(load=str(tiny_models.transformer), mode="inference", force_inference=True)
    iteration = load_checkpoint(fresh, sat_args)
    assert iteration == 1
    loaded, expected = fresh.model.state_dict(), ours.model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    assert any(not torch.equal(before[key], expected[key]) for key in expected)  # the load changed the weights
