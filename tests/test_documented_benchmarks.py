"""Every benchmark command the documentation gives (README.md, docs/*.md) runs as written, at its smallest size:
the documented flags are kept and size-reducing flags each benchmark accepts are appended (the same code path)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # benchmark subprocesses

REPO = Path(__file__).resolve().parents[1]
# Appended to a documented command: the smallest size of each benchmark. Frame counts are left to the documented
# command or the benchmark's default (every shape's default must run).
SMALLEST = {
    "bench_dit.py": ["--layers", "1", "--hidden", "64", "--heads", "2", "--height", "4", "--width", "6",
                     "--text-length", "8", "--repeats", "1", "--peak-size", "64"],
    "bench_parallel.py": ["--layers", "1", "--hidden", "64", "--heads", "2", "--height", "4", "--width", "6",
                          "--repeats", "1", "--vae-ch", "32", "--vae-frames", "5", "--vae-height", "4", "--vae-width", "6"],
    "bench_vae.py": ["--ch", "32", "--num-res-blocks", "1", "--latent-size", "2", "4", "--latent-frames", "3",
                     "--repeats", "1"],
    "bench_vae_bf16.py": ["--ch", "32", "--num-res-blocks", "1", "--latent-size", "2", "4", "--latent-frames", "3",
                          "--repeats", "1"],
    "bench_sample.py": ["--steps", "1", "--repeats", "1"],
    "bench_train.py": ["--steps", "2", "--warmup", "1", "--hidden", "64", "--layers", "1", "--frames", "5",
                       "--videos", "1", "--kinds", "lora"],
    "bench_zero3.py": ["--hidden", "64", "--layers", "1", "--steps", "1"],
    "memory_table.py": [],
    "bench_buckets.py": ["--repeats", "1"],
    "bench_first_block_cache.py": ["--steps", "2", "--repeats", "1", "--thresholds", "1.0",
                                   "--latent-size", "4", "6", "--threads", "1"],
}
# Run by their own test at their smallest size: gpu_check.py's documented lines (every part at `--smoke` size, and
# `--parts` with a budget) are tests/test_gpu_check.py's two runs; running them here again would double the suite's
# longest item.
OWN_TEST = {"gpu_check.py": "tests/test_gpu_check.py"}
COMMAND = re.compile(r"^(?:\w+=\S+\s+)*(python benchmarks/\S+\.py(?:\s+[^`#]*?)?)\s*(?:#.*)?$")


def smallest_run(command: str) -> tuple[str, ...]:
    """The arguments a documented command runs with here: its own, less the options the smallest size sets, then
    the smallest size (two documented lines that differ only in those options are one run)."""
    argv = shlex.split(command)[1:]
    smallest = SMALLEST[Path(argv[0]).name]
    options = {flag for flag in smallest if flag.startswith("--")}
    kept, dropping = [], False
    for arg in argv:
        if arg.startswith("--"):
            dropping = arg in options
        if not dropping:
            kept.append(arg)
    return (*kept, *smallest)


def documented_commands() -> list[str]:
    """`python benchmarks/...` lines of fenced or indented code blocks and inline code spans, in order, once each."""
    commands = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        fenced = False
        for line in page.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            candidates = [line.strip()] if fenced or line.startswith("    ") else re.findall(r"`([^`]+)`", line)
            commands += [match.group(1).strip() for text in candidates if (match := COMMAND.match(text.strip()))]
    return list(dict.fromkeys(commands))


def test_the_documentation_names_the_benchmarks():
    scripts = {shlex.split(command)[1] for command in documented_commands()}
    assert {"benchmarks/bench_dit.py", "benchmarks/bench_parallel.py", "benchmarks/gpu_check.py"} <= scripts
    assert {Path(script).name for script in scripts} <= set(SMALLEST) | set(OWN_TEST), "add the new benchmark's smallest size"
    for name, test in OWN_TEST.items():
        assert (REPO / test).read_text().count(f"benchmarks/{name}") >= 1, (name, test)


@pytest.mark.parametrize("run", list(dict.fromkeys(smallest_run(command) for command in documented_commands()
                                                   if Path(shlex.split(command)[1]).name not in OWN_TEST)),
                         ids=" ".join)
def test_documented_benchmark_runs_at_its_smallest_size(run, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # TORCH_EXTENSIONS_DIR: conftest.py's
    result = subprocess.run([sys.executable, *(arg.format(tmp=tmp_path) for arg in run)], cwd=REPO, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.search(r"\d", result.stdout), result.stdout  # it printed its numbers
