"""Helpers of the tests that run documented command lines as written (not a test module): a folder laid out as a
fresh clone of the repository (its tracked files, linked, and this venv as `.venv`), and one line run there by bash."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clone_shaped(folder: Path) -> Path:
    """`folder` holding what a clone holds (each top-level tracked entry, linked; nothing generated) and `.venv`."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in sorted({path.split("/")[0] for path in tracked}):
        (folder / name).symlink_to(REPO / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def run_line(command: str, cwd: Path) -> str:
    """`command` run by bash in `cwd` on one process at one thread; its output (stdout + stderr) once it exits 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def bash_lines(page: str) -> list[str]:
    """The lines of `page`'s ```bash blocks (README.md or docs/<page>.md), in order, comments kept."""
    text = (REPO / page).read_text()
    return [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines() if line]
