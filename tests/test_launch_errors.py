"""Several processes (`launch.py`, under inference.sh and finetune_multi_gpus.sh): a layout mistake is
refused before any process starts, bad input met by the processes is one line, last, once, exit 2; a crash keeps
torchrun's report."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from input_errors import EXIT_STATUS
import launch
from checkpoints.sat_checkpoint import checkpoint_path, read_checkpoint_states, save_sat_checkpoint

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL, TINY_INFERENCE, TINY_SFT = ("configs/tiny/cogvideox_tiny.yaml", "configs/tiny/inference_tiny.yaml",
                                        "configs/tiny/sft_tiny.yaml")
TORCHRUN_STARTED = "OMP_NUM_THREADS"  # torchrun's first words, on every launch


def sampling_args(tiny_models, tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "prompts.txt").write_text("a cat\n")
    tiny_models.write_config(tmp_path / "model.yaml")
    return ["--base", str(tmp_path / "model.yaml"), str(REPO / TINY_INFERENCE), "--load", str(tiny_models.transformer),
            "--input-file", str(tmp_path / "prompts.txt"), "--sampling-num-frames", "3", "--output-dir",
            str(tmp_path / "out"), "--seed", "5", *extra]


def cp2_training(tmp_path: Path) -> list[str]:
    (tmp_path / "cp2.yaml").write_text("model: {first_stage_config: {params: {cp_size: 2}}}\n")
    return ["--base", TINY_MODEL, TINY_SFT, str(tmp_path / "cp2.yaml"), "--save", str(tmp_path / "ckpts"), "--seed", "3"]


@pytest.mark.parametrize("nproc, script, args, message", [
    ("3", "sample_video.py", ["--cfg-parallel", "2"], "--cfg-parallel 2 x --sequence-parallel 1 = 2 processes per video "
     "does not divide the 3 processes (expected world size = data x cfg x sequence, e.g. --nproc_per_node=2)"),
    ("2", "sample_video.py", ["--sequence-parallel", "3"],
     "--cfg-parallel 1 x --sequence-parallel 3 = 3 processes per video does not divide the 2 processes"),
    ("2", "sample_video.py", ["--cfg-parallel", "2", "--input-type", "cli"],
     "--cfg-parallel / --sequence-parallel need --input-type txt"),
    ("2", "sample_video.py", ["--seed", "4294967295"], "--seed must be an integer from 1 to 4294967294"),
    ("3", "train_video.py", None, "first_stage_config cp_size 2 does not divide the 3 processes"),
    ("2", "train_video.py", ["--cfg-parallel", "2"], "--cfg-parallel 2: a sampling option (sample_video.py)"),
])
def test_layout_mistakes_are_refused_before_any_process_starts(tiny_models, tmp_path, capsys, monkeypatch, nproc,
                                                               script, args, message):
    monkeypatch.setattr(launch, "run", lambda *a: pytest.fail("torchrun started the processes"))
    if script == "sample_video.py":
        script_args = sampling_args(tiny_models, tmp_path, *args)
    else:
        script_args = cp2_training(tmp_path) + (args or [])
    with pytest.raises(SystemExit) as done:
        launch.main(["--standalone", f"--nproc_per_node={nproc}", str(REPO / script), *script_args])
    assert done.value.code == EXIT_STATUS
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1].startswith(f"error: {message}")


def run_script(script: str, *args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}  # conftest: this venv's programs first on PATH
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        environment.pop(name, None)
    return subprocess.run(["timeout", "600", "bash", str(REPO / script), *args], cwd=cwd, env=environment,
                          capture_output=True, text=True)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_inference_sh_checks_the_layout_before_torchrun(tiny_models, tmp_path):
    """The issue's line: NPROC=3 with --cfg-parallel 2 (finetune_multi_gpus.sh's pre-launch check: test_scripts.py)."""
    result = run_script("inference.sh", *sampling_args(tiny_models, tmp_path, "--cfg-parallel", "2"), NPROC="3")
    assert result.returncode == EXIT_STATUS, result.stderr[-3000:]
    assert last_line(result).startswith("error: --cfg-parallel 2 x --sequence-parallel 1 = 2 processes per video")
    assert "Traceback" not in result.stderr and TORCHRUN_STARTED not in result.stderr


@pytest.mark.slow
def test_bad_input_met_by_every_process_is_one_line_last(tiny_models, tmp_path):
    """A checkpoint whose shapes do not fit is found by each process when it loads (after the build): the message
    comes once, last, exit 2, without torchrun's ChildFailedError report."""
    path, _ = checkpoint_path(tiny_models.transformer)
    module = read_checkpoint_states(path)["module"]
    key = "model.diffusion_model.mixins.final_layer.norm_final.weight"
    module[key] = torch.zeros(3, 3)
    save_sat_checkpoint(module, tmp_path / "other_shape", 1)
    result = run_script("inference.sh", *sampling_args(tiny_models, tmp_path, "--cfg-parallel", "2", "--load",
                                                        str(tmp_path / "other_shape")), NPROC="2")
    assert result.returncode == EXIT_STATUS, result.stderr[-3000:]
    assert TORCHRUN_STARTED in result.stderr  # the processes ran
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [last_line(result)]
    assert errors[0].startswith(f"error: {tmp_path / 'other_shape' / '1' / 'mp_rank_00_model_states.pt'}: 1 weight(s) "
                                f"have another shape") and f"{key}: file [3, 3], model [64]" in errors[0]
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr and "exitcode" not in result.stderr


CRASHING = """
import os, sys, time
from input_errors import InputError, input_errors_as_messages
if os.environ["RANK"] == "1":
    if sys.argv[1] == "crash":
        raise RuntimeError("a bug on rank 1")
    with input_errors_as_messages():
        raise InputError("bad input seen by rank 1 only")
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["crash", "input"])
def test_a_crash_keeps_torchruns_report_and_one_rank_s_bad_input_is_shown(tmp_path, kind):
    script = tmp_path / "worker.py"
    script.write_text(CRASHING.format(repo=str(REPO)))
    result = subprocess.run([sys.executable, str(REPO / "launch.py"), "--standalone", "--nproc_per_node=2",
                             str(script), kind], capture_output=True, text=True, timeout=300)
    if kind == "crash":
        assert result.returncode == 1
        assert "RuntimeError: a bug on rank 1" in result.stderr and "ChildFailedError" in result.stderr
        assert "failed (exitcode: 1) local_rank: 1" in result.stderr  # torchrun's own lines, held, then shown
    else:
        assert result.returncode == EXIT_STATUS
        assert last_line(result) == "error: bad input seen by rank 1 only"
        assert "Traceback" not in result.stderr and "exitcode" not in result.stderr
