"""Our DiT forward == diffusers' CogVideoXTransformer3DModel on converted weights (tiny fp32, random weights)."""

import copy

import pytest
import torch

from test_dit_support import build_tiny, diffusers_forward, diffusers_from, tiny_inputs, tiny_network_config
from sgm.util import instantiate_from_config
from interop.sat_to_diffusers import sat_to_diffusers_state_dict


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, rel: float = 1e-4) -> None:
    scale = theirs.abs().max()
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= rel * scale, f"max diff {(ours - theirs).abs().max():.3g}, scale {scale:.3g}"


@pytest.mark.parametrize(
    "variant, frames",
    [("basic", 3), ("basic", 1), ("lora", 3), ("rotary", 3), ("rotary", 2), ("i2v", 3)],
)
def test_forward_matches_diffusers(variant, frames):
    """(i2v only at the full frame count: for fewer frames diffusers swaps its learned table for a sin-cos one,
    where the reference slices the learned table.)"""
    model = build_tiny(variant)
    reference = diffusers_from(model, variant)
    x, timesteps, context = tiny_inputs(frames=frames, channels=model.in_channels)
    with torch.no_grad():
        ours = model(x, timesteps, context)
        theirs = diffusers_forward(reference, x, timesteps, context)
    assert ours.shape == (*x.shape[:2], 16, *x.shape[3:])
    assert_close(ours, theirs)


def test_i2v_learned_table_and_image_channels_change_the_output():
    """The i2v comparison above is not vacuous: the learned table and the image channels both enter."""
    model = build_tiny("i2v")
    x, timesteps, context = tiny_inputs(channels=32)
    with torch.no_grad():
        ours = model(x, timesteps, context)
        without_image = model(torch.cat((x[:, :, :16], torch.zeros_like(x[:, :, 16:])), dim=2), timesteps, context)
        model.get_mixin("pos_embed").pos_embedding.zero_()
        without_table = model(x, timesteps, context)
    assert (ours - without_image).abs().max() > 1e-2 * ours.abs().max()
    assert (ours - without_table).abs().max() > 1e-3 * ours.abs().max()


def test_lora_matrices_change_the_output():
    """The LoRA comparison above is not vacuous: without the LoRA update the output differs."""
    model = build_tiny("lora")
    base = {k.replace(".original", ""): v for k, v in model.state_dict().items() if ".matrix_" not in k}
    reference = diffusers_from(model, "lora")
    reference.load_state_dict(sat_to_diffusers_state_dict(base))
    x, timesteps, context = tiny_inputs()
    with torch.no_grad():
        ours = model(x, timesteps, context)
        without_lora = diffusers_forward(reference, x, timesteps, context)
    assert (ours - without_lora).abs().max() > 1e-2 * ours.abs().max()


def test_float_and_long_timesteps_agree():
    model = build_tiny()
    x, timesteps, context = tiny_inputs()
    with torch.no_grad():
        assert torch.equal(model(x, timesteps, context), model(x, timesteps.float(), context))


def test_activation_checkpointing_gives_same_output_and_grads():
    plain = build_tiny()
    config = tiny_network_config()
    config["params"]["transformer_args"]["checkpoint_activations"] = True
    checkpointed = instantiate_from_config(config)
    checkpointed.load_state_dict(plain.state_dict())
    x, timesteps, context = tiny_inputs()
    grads = []
    for model in (plain.train(), checkpointed.train()):
        model.zero_grad()
        model(x, timesteps, context).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x, t, c: (x[:, :, :8], t, c), "expected 16 latent channels, got 8"),
        (lambda x, t, c: (torch.cat([x, x], 1), t, c), "at most 3 latent frames"),
        (lambda x, t, c: (x[..., :10], t, c), "must match the config (8, 12), got (8, 10)"),
        (lambda x, t, c: (x, t, c[:, :5]), "context must have shape (2, 16, 32), got (2, 5, 32)"),
        (lambda x, t, c: (x, t[:1], c), "timesteps must have shape (2,)"),
    ],
)
def test_bad_inputs_raise(change, message):
    model = build_tiny()
    with pytest.raises(ValueError) as error:
        model(*change(*tiny_inputs()))
    assert message in str(error.value)


def test_bad_config_raises():
    config = tiny_network_config()
    config["params"]["transformer_args"]["layernorm_ordr"] = "pre"
    with pytest.raises(ValueError, match="layernorm_ordr"):
        instantiate_from_config(config)
    config = copy.deepcopy(tiny_network_config())
    config["params"]["dtype"] = "fp64"
    with pytest.raises(ValueError, match="fp64"):
        instantiate_from_config(config)


def test_bf16_engine_cast_runs_close_to_fp32():
    """As the engine does for --bf16: parameters cast to bf16 and dtype="bf16" for the inputs."""
    model = build_tiny()
    config = tiny_network_config()
    config["params"]["dtype"] = "bf16"
    half = instantiate_from_config(config)
    half.load_state_dict(model.state_dict())
    half = half.bfloat16().eval()
    x, timesteps, context = tiny_inputs()
    with torch.no_grad():
        full, low = model(x, timesteps, context), half(x, timesteps, context)
    assert low.dtype == torch.bfloat16
    assert (low.float() - full).abs().max() <= 0.05 * full.abs().max()
