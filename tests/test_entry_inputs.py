"""Bad input to sample_video.py / train_video.py: one `error:` line, exit status 2, before the model is built.

Run in-process: each case fails in argument checking, before any weight is read, so no model is ever built here."""

import os

import pytest

import sample_video
import train_video
from input_errors import EXIT_STATUS, InputError
from video_sampling import read_prompts
from checkpoints.writable_folder import check_writable_folder

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
    assert line == (f"error: --train-iters is {iters} (command line or args.train_iters in "
                    f"{[TINY_MODEL, TINY_SFT]}); expected an integer >= 1")


def test_output_dir_where_nothing_can_be_created_is_refused_before_the_model(tiny_models, tmp_path, capsys, monkeypatch):
    """/proc passes a permission check as root, but takes no new folder: writing is tried, not guessed."""
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path, "--output-dir", "/proc/videos"), capsys)
    assert line == ("error: --output-dir '/proc/videos' cannot be written: creating a folder in '/proc' failed "
                    "(No such file or directory)")


def test_writable_folder_check_leaves_nothing_behind(tmp_path):
    check_writable_folder(str(tmp_path / "new" / "run"), "--save")
    check_writable_folder(str(tmp_path), "--save")
    assert list(tmp_path.iterdir()) == []


def test_image_prompt_with_a_text_to_video_model_is_refused_before_the_model(tiny_models, tmp_path, capsys, monkeypatch):
    (tmp_path / "prompts.txt").write_text("a cat\na dog@@dog.png\n")
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path), capsys)
    assert line == ("error: prompt line 'a dog@@dog.png' is an image-to-video line (text@@image_path), but this run "
                    "samples text-to-video: use an image-to-video model with --image2video (e.g. --base "
                    "configs/cogvideox_5b_i2v.yaml configs/inference_5b.yaml --image2video), or remove '@@' and the path")


def test_typed_image_prompt_with_a_text_to_video_model_is_asked_again(monkeypatch, capsys):
    from image_to_video.conditioning import check_text_prompts
    from video_sampling import cli_prompts

    typed = iter(["a dog@@dog.png", "a dog", ""])
    monkeypatch.setattr("builtins.input", lambda prompt: next(typed))
    assert [p.text for p in cli_prompts(check_text_prompts)] == ["a dog"]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: prompt line 'a dog@@dog.png' is an image-to-video line")


def interrupted_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        sample_video.main(argv)
    assert done.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("interrupted")]
    return line


def test_ctrl_c_while_building_says_so_and_exits_130(tiny_models, tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_video, "get_model", interrupted)
    assert interrupted_line(sampling_argv(tiny_models, tmp_path), capsys) == (
        "interrupted while building the model; no video written")


def test_ctrl_c_while_sampling_names_the_prompt_and_what_was_written(tiny_models, tmp_path, capsys, monkeypatch):
    """The tiny model is built; the sampling call itself is replaced: a small video, then Ctrl-C at the second one."""
    import torch
    import video_sampling

    calls = []

    def generate(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return torch.zeros(5, 3, 16, 16)

    monkeypatch.setattr(video_sampling, "generate_video", generate)
    (tmp_path / "prompts.txt").write_text("a cat\na dog\na bird\n")
    first = tmp_path / "out" / "0_a_cat" / "0" / "000000.mp4"
    second = tmp_path / "out" / "1_a_dog" / "0" / "000000.mp4"
    assert interrupted_line(sampling_argv(tiny_models, tmp_path), capsys) == (
        f"interrupted while sampling prompt 1 ('a dog'), video 1 of 1 for {second}; wrote 1 video(s), the last {first}")
    assert first.is_file() and not second.exists()


def test_one_ctrl_c_stops_sampling_when_python_loses_it_in_a_finalizer(tiny_models, tmp_path, capsys, monkeypatch):
    """The SIGINT arrives while decord's VideoReader.__del__ frees its decoder, as the input video of a
    video-to-video prompt is read: Python loses a KeyboardInterrupt raised in a finalizer. The run must stop before
    it samples, in the one line, status 130, without the lost interrupt's traceback."""
    import os
    import signal

    import torch
    import video_sampling
    from decord import video_reader

    free_decoder, read_video = video_reader._CAPI_VideoReaderFree, video_sampling.read_video
    reading, sent, sampled = [], [], []

    def free_with_ctrl_c(handle):
        if reading and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # handled on the next bytecode: in VideoReader.__del__
        return free_decoder(handle)

    def read(*args):
        reading.append(True)  # the model is built: this is the sampling loop's read
        return read_video(*args)

    monkeypatch.setattr(video_reader, "_CAPI_VideoReaderFree", free_with_ctrl_c)
    monkeypatch.setattr(video_sampling, "read_video", read)
    monkeypatch.setattr(video_sampling, "generate_video", lambda *args: sampled.append(args) or torch.zeros(5, 3, 8, 8))
    (tmp_path / "prompts.txt").write_text("a cat@@configs/tiny/v2v_video.mp4\n")
    with pytest.raises(SystemExit) as done:
        sample_video.main(sampling_argv(tiny_models, tmp_path, "--video2video", "--strength", "0.5"))
    err = capsys.readouterr().err
    assert sent and done.value.code == 130 and not sampled
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert line == "interrupted while reading the video 'configs/tiny/v2v_video.mp4' of prompt 0; no video written"


@pytest.mark.parametrize("world, frames, message", [
    ("1", 9, "cp_size 2 does not divide the 1 process of train_video.py (the VAE's context parallelism splits each "
             "video over a group of 2 processes): run a multiple of 2 processes, e.g. torchrun --nproc_per_node=2 "
             "train_video.py ..."),
    ("3", 9, "cp_size 2 does not divide the 3 processes"),
    ("2", 5, "cp_size 2: data: max_num_frames: a video of 5 frames cannot be split over 2 ranks"),
])
def test_training_cp_size_layouts_are_refused_before_the_build(world, frames, message, tmp_path, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", world), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", world)):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(train_video, "training_main", lambda *a, **k: pytest.fail("training started"))
    override = tmp_path / "cp2.yaml"
    override.write_text(f"model: {{first_stage_config: {{params: {{cp_size: 2}}}}}}\n"
                        f"data: {{params: {{max_num_frames: {frames}}}}}\n")
    line = error_of(train_video, ["--base", TINY_MODEL, TINY_SFT, str(override), "--save", str(tmp_path / "ckpts")],
                    capsys)
    assert message in line
