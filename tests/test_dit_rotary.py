"""The rotary (5B) tables are checkpoint state, as in the release; the I2V learned table is added to the sequence."""

import torch

from checkpoints.sat_checkpoint import load_sat_checkpoint, save_sat_checkpoint
from test_dit_support import TEXT_LENGTH, TinyEngine, build_tiny, tiny_inputs
from interop.sat_to_diffusers import SAT_PREFIX

TABLES = ("mixins.pos_embed.freqs_sin", "mixins.pos_embed.freqs_cos")


def test_tables_have_the_released_layout():
    """(T*H*W, head) rows in (t, h, w) order; per head [t 8 | h 12 | w 12] channels of interleaved pairs."""
    rotary = build_tiny("rotary").get_mixin("pos_embed")
    cos = rotary.freqs_cos  # grid 3 x 4 x 6, head 32
    assert cos.shape == (3 * 4 * 6, 32) and rotary.freqs_sin.shape == cos.shape
    assert torch.equal(cos[:, 0::2], cos[:, 1::2])  # each frequency twice in a row
    row = 1 * 24 + 2 * 6 + 3  # t=1, h=2, w=3
    torch.testing.assert_close(cos[row, 0], torch.cos(torch.tensor(1.0)))  # t block, frequency 1
    torch.testing.assert_close(cos[row, 8], torch.cos(torch.tensor(2.0)))  # h block
    torch.testing.assert_close(cos[row, 20], torch.cos(torch.tensor(3.0)))  # w block


def test_a_loaded_model_rotates_with_the_files_tables(tmp_path):
    """As the reference (SAT's non-strict load copies buffers): bf16-rounded tables in the file are what is used."""
    model = build_tiny("rotary")
    state = model.state_dict()
    for key in TABLES:
        state[key] = state[key].to(torch.bfloat16)
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in state.items()}, tmp_path, 1)
    fresh = TinyEngine(build_tiny("rotary", seed=3))
    load_sat_checkpoint(fresh, tmp_path)
    loaded = fresh.model.diffusion_model
    for key in TABLES:
        assert torch.equal(loaded.state_dict()[key], state[key].float())
    x, timesteps, context = tiny_inputs()
    with torch.no_grad():
        assert not torch.equal(loaded(x, timesteps, context), model(x, timesteps, context))


def test_bf16_engine_holds_and_saves_bf16_tables():
    model = build_tiny("rotary").bfloat16()
    assert all(model.state_dict()[key].dtype == torch.bfloat16 for key in TABLES)


def test_learned_table_is_sliced_to_the_sequence():
    model = build_tiny("i2v")
    mixin = model.get_mixin("pos_embed")
    assert mixin.pos_embedding.requires_grad and mixin.pos_embedding.shape == (1, TEXT_LENGTH + 72, 64)
    rows = mixin.position_embedding_forward(None, seq_length=48)  # 2 of 3 latent frames
    assert torch.equal(rows, mixin.pos_embedding[:, : TEXT_LENGTH + 48])
    assert build_tiny("rotary").get_mixin("pos_embed").position_embedding_forward(None, seq_length=48) is None


def test_learned_table_starts_at_zero():
    from sgm.util import instantiate_from_config
    from test_dit_support import tiny_network_config

    table = instantiate_from_config(tiny_network_config("i2v")).get_mixin("pos_embed").pos_embedding
    assert torch.count_nonzero(table) == 0
