"""`--load <run>/<iteration>`: a pretrain run, which continues in the folder it loads, is told the run folder to pass
(one line, before the build). Loading an iteration folder: tests/test_sat_checkpoint.py (unit),
tests/test_train_finetune.py (sampling from one, resuming training from one)."""

import pytest

import train_video
from checkpoints.sat_checkpoint import MODEL_STATES_NAME


def test_pretrain_from_an_iteration_folder_names_the_run_folder(tmp_path, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(train_video, "SATVideoDiffusionEngine", None)  # nothing may be built
    run = tmp_path / "run"
    (run / "4").mkdir(parents=True)
    (run / "4" / MODEL_STATES_NAME).write_bytes(b"")
    (run / "latest").write_text("4")
    with pytest.raises(SystemExit) as done:
        train_video.main(["--base", "configs/tiny/cogvideox_tiny_lora.yaml", "configs/tiny/sft_tiny.yaml", "--seed", "1",
                          "--mode", "pretrain", "--load", str(run / "4")])
    assert done.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --load {run / '4'} with --mode pretrain: the run continues in the folder it loads, so "
                      f"pass the run folder, --load {run} (it continues from the iteration its 'latest' names)"]
