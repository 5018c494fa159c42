"""The README's first line, run as written after its set-up step (`bash tools/setup_env.sh`, which CI and this venv
have done), from a folder laid out as a fresh clone: it writes the tiny weights and one 49-frame 64x96 mp4 at 8 fps
per prompt of configs/test.txt, under outputs/<index>_<prompt>/0/000000.mp4, and exits 0."""

import os
import re
import subprocess
import sys
from pathlib import Path

import imageio
import pytest

from checkpoints.output_folder import MARKER_NAME

pytestmark = pytest.mark.slow  # the entry script's subprocess

REPO = Path(__file__).resolve().parents[1]
SET_UP = "bash tools/setup_env.sh"
TRACKED = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()


def first_line() -> str:
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return block.splitlines()[0]


def test_readme_first_line_samples_one_video_per_prompt(tmp_path):
    set_up, command = first_line().split(" && ", 1)
    assert set_up == SET_UP
    for name in sorted({path.split("/")[0] for path in TRACKED}):  # what a clone holds, nothing generated
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])

    prompts = [line for line in (REPO / "configs/test.txt").read_text().splitlines() if line.strip()]
    videos = sorted((tmp_path / "outputs").glob("*/0/*.mp4"))
    assert [video.name for video in videos] == ["000000.mp4"] * len(prompts)
    assert sorted(int(video.parent.parent.name.split("_")[0]) for video in videos) == list(range(len(prompts)))
    for video in videos:
        frames = imageio.v3.imread(video)  # (frames, height, width, 3)
        assert frames.shape == (49, 64, 96, 3)
        assert imageio.v3.immeta(video)["fps"] == 8
    assert sorted(p.name for p in (tmp_path / "tiny_weights").iterdir()) == sorted([MARKER_NAME, "t5", "transformer", "vae"])
