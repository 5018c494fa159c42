"""`compile_model: true`: checkpoints load (no `_orig_mod.` keys) and sampling gives the uncompiled result.

The compile runs with dynamo's "eager" backend here: it traces the network as the default (inductor) does but skips
code generation, which takes over a minute for the tiny model on a 2-core CPU. Inductor compiles this model on the
CPU too (same video to 1e-5, measured by hand).
"""

import pytest
import torch

from sgm.modules.diffusionmodules import wrappers
from tiny_models import build_engine
from video_sampling import SamplingPlan, encode_prompt, generate_video

pytestmark = pytest.mark.slow  # dynamo tracing of the whole DiT


def test_compiled_engine_loads_the_checkpoint_and_samples_the_same_video(tiny_models, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def eager_compile(function):
        compiled.append(function)
        return real_compile(function, backend="eager")

    monkeypatch.setattr(wrappers.torch, "compile", eager_compile)
    config = tiny_models.model_config()
    config.compile_model = True
    engine = build_engine(tiny_models, config)  # loads the transformer checkpoint: fails on `_orig_mod.` keys
    assert not [key for key in engine.state_dict() if "_orig_mod" in key]
    assert compiled == []  # nothing is compiled before the first call, i.e. before loading and casting

    plan = SamplingPlan(3, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused")
    cond, uc = encode_prompt(engine, "a cat")
    video = generate_video(engine, cond, uc, plan, 11)
    assert len(compiled) == 1 and engine.model.compiled_forward is not None
    monkeypatch.undo()
    expected = generate_video(build_engine(tiny_models), cond, uc, plan, 11)
    torch.testing.assert_close(video, expected, atol=1e-5, rtol=0)
