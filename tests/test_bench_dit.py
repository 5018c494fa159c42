"""benchmarks/bench_dit.py: its equivalence line ("max |ours - diffusers| on identical weights") holds for every shape."""

import pytest
import torch

from benchmarks.bench_dit import SHAPES, model_pair, network_config, ofs_for, parse_args


@pytest.mark.parametrize("shape", SHAPES)
def test_benchmarked_models_agree_on_identical_weights(shape):
    frames, height, width, text_length, text_hidden, hidden, heads = 2, 4, 6, 8, 16, 64, 2
    config = network_config(1, hidden, heads, text_length, text_hidden, frames, height, width, shape)
    ours, theirs, rotary = model_pair(config, hidden // heads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, frames, ours.in_channels, height, width, generator=generator)
    context = torch.randn(1, text_length, text_hidden, generator=generator)
    timesteps = torch.tensor([500])
    with torch.no_grad():
        mine = ours(x, timesteps, context, ofs=ofs_for(shape))
        reference = theirs(x, context, timesteps, ofs=ofs_for(shape), image_rotary_emb=rotary, return_dict=False)[0]
    assert mine.abs().max() > 0.1  # not a trivially zero output
    torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_runs_at_its_defaults(shape):
    """`--shape 1.5` alone (a documented command) used to refuse its own default --frames 5."""
    args = parse_args(["--shape", shape])
    assert args.frames == (6 if shape.startswith("1.5") else 5)
    config = network_config(1, 64, 2, 8, 16, args.frames, 4, 6, shape)
    ours, _, _ = model_pair(config, 32)
    with torch.no_grad():
        out = ours(torch.randn(1, args.frames, ours.in_channels, 4, 6), torch.tensor([500]), torch.randn(1, 8, 16),
                   ofs=ofs_for(shape))
    assert out.shape == (1, args.frames, 16, 4, 6)
