"""benchmarks/gpu_check.py: the CPU smoke run of every part reports real numbers (so the GPU script cannot rot),
a part over its budget is reported and the run goes on, bad options end with one message."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[1]
# Rows every smoke run must hold, per part (substrings of `what`), and those measured side by side with diffusers.
EXPECTED = {
    "build": ["FusedEmaAdam: build"],
    "sample": ["T5 (tiny shape) encode", "s/step", "2 steps", "VAE decode of 9 frames",
               "50-step video, sampling + decode", "peak memory while decoding", "peak memory, sampling and decode",
               "first-block cache 0.1: 2 steps", "first-block cache 0.1: sampling time / uncached sampling time",
               "first-block cache 0.1: share of DiT blocks skipped"],
    "lora": ["from videos: s/step", "from videos: peak memory over the steps", "checkpoint save",
             "load the checkpoint back", "EMA weights", "tools/precompute.py on the clip",
             "from a precomputed cache: s/step", "from a precomputed cache: peak memory over the steps"],
    "full": ["from videos: s/step", "from videos: peak memory over the steps", "checkpoint save",
             "load the checkpoint back", "EMA weights", "tools/precompute.py on the clip",
             "from a precomputed cache: s/step", "from a precomputed cache: peak memory over the steps"],
    "1.5": ["1.5-5B sampling, fp32: one step", "1.5-5B sampling, fp32: peak memory, sampling",
            "1.5-5B LoRA fine-tune, fp32, ZeRO-2: s/step", "1.5-5B LoRA fine-tune, fp32, ZeRO-2: peak memory",
            "1.5-5B LoRA fine-tune with buckets, fp32, ZeRO-2: s/step"],
    "5b": ["5B sampling, fp32: one step", "5B sampling, fp32: peak memory, sampling",
           "5B LoRA fine-tune, fp32, ZeRO-2: s/step", "5B LoRA fine-tune, fp32, ZeRO-2: peak memory"],
    "parallel": ["cfg s/step ratio", "sequence s/step ratio", "cp2 rank 0 decode time ratio",
                 "cp2 rank 1 decode peak memory ratio"],
}
SIDE_BY_SIDE = ["s/step", "2 steps", "VAE decode", "50-step video, sampling + decode", "peak memory while decoding",
                "peak memory, sampling"]
# The only rows allowed to carry no number on the CPU, with the reason the table gives.
UNMEASURED_ON_CPU = {"FusedEmaAdam: build": "GPU only", "EMA weights": "not written: torch AdamW on the CPU keeps no EMA"}


def run_gpu_check(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The smoke run at one torch thread per process: the CPU numbers say nothing about speed, and two threads per
    process on cores the other test worker also uses took twice as long (the sampling parts)."""
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--sample-steps", "2", "--train-steps",
                           "2", "--out", str(out), "--work", str(tmp_path / "work"), *options],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=900)
    return done, json.loads(out.read_text())


@pytest.mark.slow
def test_smoke_run_measures_every_part(tmp_path):
    done, table = run_gpu_check(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert table["smoke"] is True and table["parts"] == list(gpu_check.PARTS)
    rows = table["rows"]
    for part, expected in EXPECTED.items():
        whats = [row["what"] for row in rows if row["part"] == part]
        for phrase in expected:
            assert any(phrase in what for what in whats), (part, phrase, whats)
    for row in rows:
        unmeasured = [reason for phrase, reason in UNMEASURED_ON_CPU.items() if phrase in row["what"]]
        if unmeasured:
            assert row["ours"] is None and row["note"] == unmeasured[0], row
            continue
        assert isinstance(row["ours"], float) and math.isfinite(row["ours"]) and row["ours"] >= 0, row
        assert row["what"] in done.stdout  # the printed table
    sampling = [row for row in rows if row["part"] == "sample" and row["what"].startswith("2B sampling")]
    for phrase in SIDE_BY_SIDE:
        row = next(row for row in sampling if phrase in row["what"])
        assert row["diffusers"] > 0 and row["ratio"] == pytest.approx(row["ours"] / row["diffusers"]), row
    assert all(row["ours"] > 0 for row in rows if row["what"].endswith("s/step (median of steps 2..2)"))
    one_step_15 = next(row for row in rows if row["part"] == "1.5" and "one step" in row["what"])
    assert one_step_15["diffusers"] > 0  # CogVideoX1.5 sampling side by side with diffusers' 1.5 pipeline


@pytest.mark.slow
def test_part_over_budget_is_reported_and_the_run_goes_on(tmp_path):
    done, table = run_gpu_check(tmp_path, "--parts", "sample,build", "--budget", "sample=1")
    assert done.returncode == 1
    notes = {row["part"]: row["note"] for row in table["rows"]}
    assert notes == {"sample": "failed: over its budget of 1 s", "build": "GPU only"}


@pytest.mark.parametrize("options, message", [
    (["--parts", "sample,warp"], "unknown part(s) ['warp']"),
    (["--budget", "lora"], "expected PART=SECONDS"),
    (["--sample-steps", "1"], "at least 2"),
])
def test_bad_options_end_with_one_message(options, message):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--smoke", *options])
    assert message in str(stopped.value)


def test_parallel_part_on_fewer_than_two_gpus_is_a_skipped_row(tmp_path):
    from benchmarks.gpu_check_table import RowWriter, read_rows

    gpu_check.part_parallel(RowWriter(tmp_path / "rows.jsonl", "parallel"), smoke=False, work=tmp_path)
    (row,) = read_rows(tmp_path / "rows.jsonl")
    assert row.ours is None and row.note == "skipped: needs 2 GPUs, this machine has 0"
