"""docs/buckets.md's commands, run as written (bash, from a folder laid out as a fresh clone): the synthetic portrait,
landscape and square clips of 2 to 6 s, then `bash finetune_single_gpu.sh <tiny 1.5 LoRA> <tiny bucket sft>` trains end to
end from the videos and from a latent cache with equal losses, and the fine-tuned model samples at a bucket's size."""

import re

import imageio
import pytest

from doc_runs import bash_lines, clone_shaped, run_line

pytestmark = pytest.mark.slow  # entry-script subprocesses


def losses(output: str) -> list[str]:
    """The training and validation losses SAT logs, as printed."""
    return re.findall(r"(?:total loss|loss:) ([0-9.]+E[+-][0-9]+)", output)


def test_docs_commands_train_from_videos_and_cache_and_sample(tmp_path):
    folder = clone_shaped(tmp_path)
    commands = bash_lines("docs/buckets.md")
    assert len(commands) == 6, commands
    outputs = [run_line(command, folder) for command in commands]
    from_videos, from_cache = losses(outputs[2]), losses(outputs[4])
    assert len(from_videos) == 10 + 2 and from_videos == from_cache  # 10 steps, 2 validations: equal as printed
    assert "9x80x80                2        100.0%" in outputs[2]  # the listing's table
    videos = list((tmp_path / "outputs").rglob("*.mp4"))  # one per prompt of configs/test.txt
    assert videos and all(imageio.v3.improps(v).shape[1:3] == (96, 64) for v in videos)  # the portrait bucket's size
