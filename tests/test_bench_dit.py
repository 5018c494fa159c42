"""benchmarks/bench_dit.py: its equivalence line ("max |ours - diffusers| on identical weights") holds for every shape."""

import pytest
import torch

from benchmarks.bench_dit import SHAPES, model_pair, network_config, ofs_for


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
