"""Bad input to sample_video.py / train_video.py: one `error:` line, exit status 2, before the model is built.

Run in-process: each case fails in argument checking, before any weight is read, so no model is ever built here."""

import os

import pytest

import sample_video
import train_video
from input_errors import EXIT_STATUS, InputError
from video_sampling import read_prompts
from writable_folder import check_writable_folder

TINY_MODEL, TINY_INFERENCE = "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/inference_tiny.yaml"
TINY_SFT = "configs/tiny/sft_tiny.yaml"


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)


def error_of(entry, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        entry.main(argv)
    assert done.value.code == EXIT_STATUS
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def sampling_argv(tiny_models, tmp_path, *extra: str) -> list[str]:
    prompts = tmp_path / "prompts.txt"
    if not prompts.exists():
        prompts.write_text("a cat\n")
    model_yaml = tmp_path / "model.yaml"
    if not model_yaml.exists():
        tiny_models.write_config(model_yaml)
    return ["--base", str(model_yaml), TINY_INFERENCE, "--load", str(tiny_models.transformer), "--input-file", str(prompts),
            "--sampling-num-frames", "3", "--output-dir", str(tmp_path / "out"), *extra]


def test_output_dir_under_a_file_is_refused_before_the_model(tiny_models, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path, "--output-dir", str(tmp_path / "a_file" / "out")), capsys)
    assert line == f"error: --output-dir {str(tmp_path / 'a_file' / 'out')!r} cannot be created: {str(tmp_path / 'a_file')!r} is a file, not a folder"


def test_prompt_file_not_utf8_names_the_file_and_line(tiny_models, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("a cat\nun caf\xe9 \xe0 Paris\n".encode("latin-1"))
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path), capsys)
    assert line == (f"error: prompt file {str(prompts)!r} is not UTF-8 text: byte 0xe9 at offset 12 (line 2) cannot be "
                    "decoded; save the file as UTF-8")


def test_prompt_file_lines_split_as_open_splits_them(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("a caf\u00e9\r\n\r\nform\x0cfeed\rlast".encode("utf-8"))
    assert [p.text for p in read_prompts(str(prompts))] == ["a caf\u00e9", "form\x0cfeed", "last"]


def test_save_under_a_file_is_refused_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(train_video, "training_main", lambda *a, **k: pytest.fail("training started"))
    line = error_of(train_video, ["--base", TINY_MODEL, TINY_SFT, "--save", str(tmp_path / "a_file" / "ckpts")], capsys)
    assert "error: --save" in line and "is a file, not a folder" in line


def test_read_only_folder_is_refused(tmp_path, monkeypatch):
    """os.access answers for the running user (root may write anywhere): a user without write permission."""
    monkeypatch.setattr(os, "access", lambda path, mode: os.path.realpath(path) != os.path.realpath(tmp_path))
    with pytest.raises(InputError, match=rf"--save '.*ckpts/run' cannot be written: no write permission on '{tmp_path}'"):
        check_writable_folder(str(tmp_path / "ckpts" / "run"), "--save")
    check_writable_folder(str(tmp_path.parent / "elsewhere"), "--save")


def test_missing_data_folder_is_one_message(tmp_path, capsys):
    line = error_of(train_video, ["--base", TINY_MODEL, TINY_SFT, "--train-data", str(tmp_path / "no_such_data"),
                                  "--save", str(tmp_path / "ckpts")], capsys)
    assert str(tmp_path / "no_such_data") in line


def test_internal_errors_keep_their_traceback(tiny_models, tmp_path, monkeypatch):
    def broken(*args):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(sample_video, "get_model", broken)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        sample_video.main(sampling_argv(tiny_models, tmp_path))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model: {first_stage_config: {params: {ckpt_path: /nowhere/3d-vae.pt}}}",
         "VAE checkpoint not found: '/nowhere/3d-vae.pt' (first_stage_config.params.ckpt_path)"),
        ("model: {sampler_config: {params: {guider_config: {params: {exp: 2.5}}}}}", "DynamicCFG: exp=2.5 must be an integer"),
        ("model: {conditioner_config: {params: {emb_models: [{target: sgm.modules.encoders.modules.FrozenT5Embedder, "
         "is_trainable: false, input_key: txt, ucg_rate: 0.1, params: {model_dir: /nowhere/t5, max_length: 226}}]}}}",
         "T5 folder '/nowhere/t5' does not exist"),
    ],
)
def test_model_parts_are_checked_before_the_model_is_built(tiny_models, tmp_path, capsys, monkeypatch, override, message):
    (tmp_path / "override.yaml").write_text(override + "\n")
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    argv = sampling_argv(tiny_models, tmp_path)
    argv.insert(argv.index("--load"), str(tmp_path / "override.yaml"))
    assert error_of(sample_video, argv, capsys).startswith(f"error: {message}")


@pytest.mark.parametrize("iters", ["0", "-3"])
def test_no_iterations_is_refused_before_the_model(tmp_path, capsys, monkeypatch, iters):
    monkeypatch.setattr(train_video, "training_main", lambda *a, **k: pytest.fail("the model was built"))
    line = error_of(train_video, ["--base", TINY_MODEL, TINY_SFT, "--save", str(tmp_path / "ckpts"),
                                  "--train-iters", iters], capsys)
    assert line == (f"error: train_iters is {iters} (--train-iters or args.train_iters in "
                    f"{[TINY_MODEL, TINY_SFT]}): nothing to train; give a number of iterations >= 1")
