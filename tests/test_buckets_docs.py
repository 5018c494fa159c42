"""docs/buckets.md's commands, run as written (bash, from a folder laid out as the repo root): the synthetic portrait,
landscape and square clips of 2 to 6 s, then `bash finetune_single_gpu.sh <tiny 1.5 LoRA> <tiny bucket sft>` trains end to
end from the videos and from a latent cache with equal losses, and the fine-tuned model samples at a bucket's size."""

import os
import re
import subprocess
import sys
from pathlib import Path

import imageio
import pytest

pytestmark = pytest.mark.slow  # entry-script subprocesses

REPO = Path(__file__).resolve().parents[1]
GENERATED = {".git", ".venv", ".pytest_cache", "__pycache__"}


def doc_commands() -> list[str]:
    text = (REPO / "docs/buckets.md").read_text()
    return [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines() if line]


def losses(output: str) -> list[str]:
    """The training and validation losses SAT logs, as printed."""
    return re.findall(r"(?:total loss|loss:) ([0-9.]+E[+-][0-9]+)", output)


def test_docs_commands_train_from_videos_and_cache_and_sample(tmp_path):
    for entry in REPO.iterdir():  # the repo's files, without what the commands write
        if entry.name not in GENERATED and not entry.name.startswith(("tiny_", "ckpts", "outputs")):
            (tmp_path / entry.name).symlink_to(entry)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    commands = doc_commands()
    assert len(commands) == 6, commands
    outputs = []
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        outputs.append(done.stdout + done.stderr)
    from_videos, from_cache = losses(outputs[2]), losses(outputs[4])
    assert len(from_videos) == 10 + 2 and from_videos == from_cache  # 10 steps, 2 validations: equal as printed
    assert "9x80x80                2        100.0%" in outputs[2]  # the listing's table
    videos = list((tmp_path / "outputs").rglob("*.mp4"))  # one per prompt of configs/test.txt
    assert videos and all(imageio.v3.improps(v).shape[1:3] == (96, 64) for v in videos)  # the portrait bucket's size
