"""docs/fine-tuning.md's tiny LoRA run, as written (after the README's tiny weights, on the page's one synthetic
clip): 200 iterations through `bash finetune_single_gpu.sh` (a seed of its own drawing), the loss level about 2.9
through the first 100 (SAT's 0.05x learning rate) and about 2.3 at iteration 200, as the page says."""

import re

import pytest

from doc_runs import bash_lines, clone_shaped, run_line

pytestmark = pytest.mark.slow  # a 200-iteration DeepSpeed run (about a minute)

WEIGHTS = ".venv/bin/python tools/make_tiny_weights.py"  # the README first line's tiny weights


def test_tiny_lora_run_stays_level_then_falls(tmp_path):
    lines = bash_lines("docs/fine-tuning.md")
    (data,) = [line for line in lines if line.startswith("python tools/make_tiny_data.py")]
    lora = next(line for line in lines if "configs/tiny/cogvideox_tiny_lora.yaml configs/tiny/sft_tiny.yaml" in line)
    assert WEIGHTS in bash_lines("README.md")[0]
    folder = clone_shaped(tmp_path)
    run_line(f"{WEIGHTS} && {data}", folder)
    output = run_line(lora, folder)

    losses = {int(i): float(loss) for i, loss in re.findall(r"iteration +(\d+)/ +200 .*?total loss ([0-9.E+-]+)", output)}
    assert sorted(losses) == list(range(20, 201, 20))  # printed every 20 iterations
    level = [losses[i] for i in range(20, 101, 20)]
    assert abs(sum(level) / len(level) - 2.9) < 0.15 and max(level) - min(level) < 0.4  # about 2.9, level
    assert abs(losses[200] - 2.3) < 0.2 and losses[200] < min(level) - 0.3  # about 2.3: it fell
