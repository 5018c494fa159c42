"""Session-wide fixtures: one tiny model set in the real file formats, shared by the end-to-end tests."""

import hashlib
import os
import sys
from pathlib import Path

import pytest

from tiny_models import TINY_5B_CONFIG, TINY_15_CONFIG, TINY_15_I2V_CONFIG, TINY_I2V_CONFIG, TinyModelSet, make_tiny_model_set

# DeepSpeed builds its CPU shared-memory op (deepspeed_shm_comm) on first use, 20 s on the 2-core machine (2026-12-05),
# with the first `ninja` on PATH, in TORCH_EXTENSIONS_DIR, by a build file that names the venv's path. Each of these
# made a later DeepSpeed process of the suite build it again: (1) the venv's ninja (1.13) and the system's (1.11) each
# take the other's build for a changed one, and tests that put the venv's bin first on PATH alternated with tests that
# do not: so every test process and subprocess finds this venv's programs first (python, torchrun, ninja); (2)
# checkouts sharing one folder (torch's default, or ~/.cache/torch_extensions) rebuilt it for each other: one folder
# per venv path (a TORCH_EXTENSIONS_DIR already set is kept). Built once per checkout.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser(
    f"~/.cache/torch_extensions/tests-{hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]}"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModelSet:
    """Tiny random weights (SAT transformer checkpoint, 3d-vae.pt, T5 folder) written once per test session."""
    return make_tiny_model_set(tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture(scope="session")
def tiny_i2v_models(tmp_path_factory) -> TinyModelSet:
    """The same for the tiny 5B-I2V-shaped model (configs/tiny/cogvideox_tiny_i2v.yaml)."""
    return make_tiny_model_set(tmp_path_factory.mktemp("tiny_i2v_weights"), config_path=TINY_I2V_CONFIG)


@pytest.fixture(scope="session")
def tiny_5b_models(tmp_path_factory) -> TinyModelSet:
    """The same for the tiny 5B-shaped model (3D rotary; configs/tiny/cogvideox_tiny_5b.yaml)."""
    return make_tiny_model_set(tmp_path_factory.mktemp("tiny_5b_weights"), config_path=TINY_5B_CONFIG)


@pytest.fixture(scope="session")
def tiny_15_models(tmp_path_factory) -> TinyModelSet:
    """The same for the tiny CogVideoX1.5-shaped model (configs/tiny/cogvideox1.5_tiny.yaml)."""
    return make_tiny_model_set(tmp_path_factory.mktemp("tiny_15_weights"), config_path=TINY_15_CONFIG)


@pytest.fixture(scope="session")
def tiny_15_i2v_models(tmp_path_factory) -> TinyModelSet:
    """The same for the tiny CogVideoX1.5-I2V-shaped model (configs/tiny/cogvideox1.5_tiny_i2v.yaml)."""
    return make_tiny_model_set(tmp_path_factory.mktemp("tiny_15_i2v_weights"), config_path=TINY_15_I2V_CONFIG)
