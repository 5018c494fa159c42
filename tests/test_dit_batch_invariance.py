"""A sample's DiT output does not depend on the batch it shares (dit/per_sample.py): the guided batch of one process
and a guidance-parallel rank's batch of one give the same numbers, bit for bit."""

import pytest
import torch

from dit.per_sample import per_sample
from parallel_worker import dit_inputs, latent_frames
from tiny_models import build_engine

ALL_FAMILIES = ["tiny_models", "tiny_5b_models", "tiny_i2v_models", "tiny_15_models", "tiny_15_i2v_models"]


@pytest.mark.parametrize("models_fixture", ALL_FAMILIES)
@pytest.mark.parametrize("threads", [1, 2])
def test_each_row_of_a_batch_equals_that_sample_alone(models_fixture, threads, request):
    models = request.getfixturevalue(models_fixture)
    engine = build_engine(models)
    dit = engine.model.diffusion_model
    x, timesteps, context = dit_inputs(engine, latent_frames(models))
    ofs = {} if dit.ofs_embed is None else {"ofs": torch.tensor([2.0])}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            batch = dit(x, timesteps, context, **ofs)  # (2, t, c, h, w)
            alone = [dit(x[i : i + 1], timesteps[i : i + 1], context[i : i + 1], **ofs) for i in range(2)]
    finally:
        torch.set_num_threads(previous)
    for i in range(2):
        assert torch.equal(batch[i : i + 1], alone[i]), f"row {i}: max |Δ| {(batch[i : i + 1] - alone[i]).abs().max():.3g}"


def test_per_sample_runs_rows_alone_when_sampling_and_batched_with_gradients():
    """Training keeps one call per map (under ZeRO-3 each call gathers the map's parameters)."""
    calls = []
    linear = torch.nn.Linear(4, 3)
    linear.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    rows = torch.randn(3, 4)
    with torch.no_grad():
        alone = per_sample(linear, rows)
    assert calls == [1, 1, 1]
    calls.clear()
    batched = per_sample(linear, rows)
    assert calls == [3] and batched.requires_grad
    torch.testing.assert_close(alone, batched.detach(), rtol=1e-6, atol=1e-6)
