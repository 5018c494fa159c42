"""The README's first line, run as written after its set-up step (`bash tools/setup_env.sh`, which CI and this venv
have done), from a folder laid out as a fresh clone: it writes the tiny weights and one 49-frame 64x96 mp4 at 8 fps
per prompt of configs/test.txt, under outputs/<index>_<prompt>/0/000000.mp4, and exits 0."""

import imageio
import pytest

from checkpoints.output_folder import MARKER_NAME
from doc_runs import REPO, bash_lines, clone_shaped, run_line

pytestmark = pytest.mark.slow  # the entry script's subprocess

SET_UP = "bash tools/setup_env.sh"


def test_readme_first_line_samples_one_video_per_prompt(tmp_path):
    set_up, command = bash_lines("README.md")[0].split(" && ", 1)
    assert set_up == SET_UP
    run_line(command, clone_shaped(tmp_path))

    prompts = [line for line in (REPO / "configs/test.txt").read_text().splitlines() if line.strip()]
    videos = sorted((tmp_path / "outputs").glob("*/0/*.mp4"))
    assert [video.name for video in videos] == ["000000.mp4"] * len(prompts)
    assert sorted(int(video.parent.parent.name.split("_")[0]) for video in videos) == list(range(len(prompts)))
    for video in videos:
        frames = imageio.v3.imread(video)  # (frames, height, width, 3)
        assert frames.shape == (49, 64, 96, 3)
        assert imageio.v3.immeta(video)["fps"] == 8
    assert sorted(p.name for p in (tmp_path / "tiny_weights").iterdir()) == sorted([MARKER_NAME, "t5", "transformer", "vae"])
