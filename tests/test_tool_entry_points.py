"""tools/*.py run as scripts: bad input ends in one `error:` line and exit status 2, no traceback."""

import runpy
import sys

import pytest

from input_errors import EXIT_STATUS


def run_tool(monkeypatch, capsys, script: str, *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == EXIT_STATUS
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


@pytest.mark.parametrize(
    "script, argv, message",
    [
        ("tools/convert_vae.py", ["to-diffusers", "{tmp}/none.pt", "{tmp}/out"], "SAT VAE file '{tmp}/none.pt' does not exist"),
        ("tools/convert_weight_hf2sat.py", ["--diffusers", "{tmp}/hf", "--output", "{tmp}/out"], "{tmp}/hf/config.json not found"),
        ("tools/convert_weight_sat2hf.py", ["--sat-config", "{tmp}/none.yaml", "--checkpoint", "{tmp}", "--output", "{tmp}/o"],
         "--sat-config '{tmp}/none.yaml' does not exist"),
        ("tools/convert_weight_sat2hf.py", ["--sat-config", "configs/tiny/cogvideox_tiny.yaml", "--checkpoint", "{tmp}/ck",
                                            "--output", "{tmp}/o"], "checkpoint folder {tmp}/ck does not exist"),
        ("tools/merge_lora.py", ["--config", "{tmp}/none.yaml", "--checkpoint", "{tmp}", "--output", "{tmp}/o"],
         "--config '{tmp}/none.yaml' does not exist"),
        ("tools/make_tiny_weights.py", ["--config", "{tmp}/none.yaml", "--out", "{tmp}/w"], "--config '{tmp}/none.yaml' does not exist"),
        ("tools/export_diffusers_pipeline.py", ["--base", "{tmp}/none.yaml", "--checkpoint", "{tmp}", "--output", "{tmp}/o"],
         "--base '{tmp}/none.yaml' does not exist"),
        ("tools/import_diffusers_pipeline.py", ["{tmp}/pipe", "--output", "{tmp}/o"], "{tmp}/pipe/model_index.json not found"),
    ],
)
def test_bad_input_is_one_message(monkeypatch, capsys, tmp_path, script, argv, message):
    line = run_tool(monkeypatch, capsys, script, *(arg.format(tmp=tmp_path) for arg in argv))
    assert line.startswith(f"error: {message.format(tmp=tmp_path)}")
