"""GeneralConditioner: config parsing, condition dropout (exact draw), zero uc, concatenation, freezing."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sgm.modules import GeneralConditioner
from sgm.modules.encoders.modules import FrozenT5Embedder
from sgm.util import ConfigError, instantiate_from_config
from tiny.t5 import make_tiny_t5

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["A fox walks through fresh snow.", "Fireworks burst above a city skyline.", "A cat sleeps."]


def identity_entry(input_key: str, ucg_rate: float = 0.0, **extra) -> dict:
    """An embedder entry whose model passes batch[input_key] through unchanged."""
    return {"is_trainable": False, "input_key": input_key, "ucg_rate": ucg_rate, "target": "torch.nn.Identity", **extra}


@pytest.fixture(scope="module")
def tiny_conditioner(tmp_path_factory):
    """The conditioner of configs/tiny/cogvideox_tiny.yaml, built as the engine builds it, on a tiny T5."""
    t5_dir = make_tiny_t5(tmp_path_factory.mktemp("t5"), seed=0)
    config = OmegaConf.load(REPO / "configs" / "tiny" / "cogvideox_tiny.yaml").model.conditioner_config
    config.params.emb_models[0].params.model_dir = str(t5_dir)
    return instantiate_from_config(config)


def test_tiny_config_builds_frozen_t5(tiny_conditioner):
    (spec,), (t5,) = tiny_conditioner.specs, tiny_conditioner.embedders
    assert isinstance(t5, FrozenT5Embedder)
    assert (spec.input_key, spec.is_trainable, spec.ucg_rate) == ("txt", False, 0.1)
    assert all(not p.requires_grad for p in tiny_conditioner.parameters())
    tiny_conditioner.train()
    assert tiny_conditioner.training and not t5.training and not t5.transformer.training


def test_c_is_the_t5_embedding_and_uc_is_zero(tiny_conditioner):
    t5 = tiny_conditioner.embedders[0]
    rng_before = torch.get_rng_state()
    c, uc = tiny_conditioner.get_unconditional_conditioning(
        {"txt": PROMPTS}, {"txt": PROMPTS}, force_uc_zero_embeddings=["txt"]
    )
    assert torch.equal(torch.get_rng_state(), rng_before)  # no dropout draw
    assert c.keys() == uc.keys() == {"crossattn"}
    assert c["crossattn"].shape == (3, 226, 32)
    torch.testing.assert_close(c["crossattn"], t5(PROMPTS), rtol=0, atol=0)
    assert torch.count_nonzero(uc["crossattn"]) == 0 and uc["crossattn"].shape == (3, 226, 32)
    assert tiny_conditioner.specs[0].ucg_rate == 0.1  # no state was changed


def test_force_cond_zero_and_batch_uc(tiny_conditioner):
    c, uc = tiny_conditioner.get_unconditional_conditioning(
        {"txt": PROMPTS[:2]}, batch_uc={"txt": ["", ""]}, force_cond_zero_embeddings=["txt"]
    )
    assert torch.count_nonzero(c["crossattn"]) == 0
    torch.testing.assert_close(uc["crossattn"], tiny_conditioner.embedders[0](["", ""]), rtol=0, atol=0)


def test_forward_drops_with_one_bernoulli_draw(tiny_conditioner):
    t5 = tiny_conditioner.embedders[0]
    emb = t5(PROMPTS)  # (3, 226, 32)
    torch.manual_seed(11)
    out = tiny_conditioner({"txt": PROMPTS})["crossattn"]
    after_call = torch.rand(4)
    # the reference's draw, replayed: one bernoulli of (1 - ucg_rate) * ones(b), multiplied in
    torch.manual_seed(11)
    keep = torch.bernoulli((1.0 - 0.1) * torch.ones(3))
    after_reference = torch.rand(4)
    torch.testing.assert_close(out, keep[:, None, None] * emb, rtol=0, atol=0)
    assert torch.equal(after_call, after_reference)  # exactly one draw of that shape was consumed


def test_dropout_statistics_and_whole_sample_drop():
    conditioner = GeneralConditioner([identity_entry("x", ucg_rate=0.1)])
    x = torch.rand(20000, 2, 3) + 0.5  # (b, L, D), never zero
    torch.manual_seed(0)
    out = conditioner({"x": x})["crossattn"]
    dropped = (out == 0).all(dim=(1, 2))
    kept = (out == x).all(dim=(1, 2))
    assert bool((dropped | kept).all())  # each sample is dropped as a whole or untouched
    assert abs(dropped.float().mean().item() - 0.1) < 0.0065  # 3 sigma at b = 20000


def test_eval_mode_still_drops_like_the_reference():
    conditioner = GeneralConditioner([identity_entry("x", ucg_rate=0.5)]).eval()
    torch.manual_seed(1)
    out = conditioner({"x": torch.ones(64, 1, 1)})["crossattn"]
    assert 0 < torch.count_nonzero(out) < 64


def test_zero_ucg_rate_draws_nothing():
    conditioner = GeneralConditioner([identity_entry("x")])
    x = torch.randn(5, 2, 3)
    rng_before = torch.get_rng_state()
    out = conditioner({"x": x})
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(out["crossattn"], x)


def test_outputs_sorted_by_rank_and_concatenated():
    conditioner = GeneralConditioner(
        [identity_entry("a"), identity_entry("b"), identity_entry("v"), identity_entry("w"), identity_entry("img")]
    )
    batch = {
        "a": torch.randn(2, 5, 3),  # crossattn (b, L, D1)
        "b": torch.randn(2, 5, 4),  # crossattn (b, L, D2)
        "v": torch.randn(2, 6),  # vector (b, D)
        "w": torch.randn(2, 1),
        "img": torch.randn(2, 3, 4, 4),  # concat (b, c, h, w)
    }
    out = conditioner(batch, force_zero_embeddings=["b"])
    assert out.keys() == {"crossattn", "vector", "concat"}
    torch.testing.assert_close(out["crossattn"], torch.cat([batch["a"], torch.zeros(2, 5, 4)], dim=2))
    torch.testing.assert_close(out["vector"], torch.cat([batch["v"], batch["w"]], dim=1))
    assert torch.equal(out["concat"], batch["img"])


def linear(out_features: int) -> dict:
    return {"in_features": 3, "out_features": out_features}


def test_trainable_embedder_gets_gradients_frozen_does_not():
    torch.manual_seed(0)
    entries = [
        {"is_trainable": True, "input_key": "x", "target": "torch.nn.Linear", "params": linear(4)},
        {"is_trainable": False, "input_key": "x", "target": "torch.nn.Linear", "params": linear(2)},
    ]
    conditioner = GeneralConditioner(entries)
    conditioner.train()
    trainable, frozen = conditioner.embedders
    assert trainable.training and not frozen.training
    out = conditioner({"x": torch.randn(2, 5, 3)})["crossattn"]  # (2, 5, 4 + 2)
    assert out.shape == (2, 5, 6)
    out.sum().backward()
    assert trainable.weight.grad is not None
    assert not frozen.weight.requires_grad and frozen.weight.grad is None


def test_unknown_field_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"emb_models\[1\]: unknown field\(s\) \['ucg_rat'\]"):
        GeneralConditioner([identity_entry("a"), {"input_key": "b", "ucg_rat": 0.1, "target": "torch.nn.Identity"}])


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"target": "torch.nn.Identity"}, "missing field 'input_key'"),
        (identity_entry("x", ucg_rate=1.5), "ucg_rate must be a number in \\[0, 1\\], got 1.5"),
        (identity_entry("x", is_trainable="no"), "is_trainable must be true or false, got 'no'"),
        (
            {
                "input_key": "txt",
                "target": "sgm.modules.encoders.modules.FrozenT5Embedder",
                "params": {"model_dir": "t5", "devise": "cuda"},
            },
            r"emb_models\[0\]: target .*FrozenT5Embedder': unknown parameter\(s\) \['devise'\]; did you mean device\?",
        ),
    ],
)
def test_bad_entries(entry, message):
    with pytest.raises(ConfigError, match=message):
        GeneralConditioner([entry])


def test_bad_calls():
    conditioner = GeneralConditioner([identity_entry("x")])
    with pytest.raises(KeyError, match="batch has no key 'x'"):
        conditioner({"txt": torch.zeros(1, 1, 1)})
    with pytest.raises(ValueError, match=r"cannot zero embeddings of \['txt'\]"):
        conditioner({"x": torch.zeros(1, 1, 1)}, force_zero_embeddings=["txt"])
    six_dims = r"returned Tensor \(2, 3, 4, 5, 6, 7\); expected a tensor of \[2, 3, 4, 5\] dims"
    with pytest.raises(ValueError, match=six_dims):
        conditioner({"x": torch.zeros(2, 3, 4, 5, 6, 7)})
    with pytest.raises(TypeError, match="got the string 'x'"):
        conditioner.get_unconditional_conditioning({"x": torch.zeros(1, 1, 1)}, force_uc_zero_embeddings="x")
