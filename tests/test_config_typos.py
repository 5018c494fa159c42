"""A typo'd key in any section of a config file (`args:`, `model:`, `data:`, `deepspeed:`) is one line naming the file,
the key and the close match, exit status 2, found before anything is built."""

import pytest

import sample_video
import train_video

TYPOS = [  # section text of an extra --base file, the line expected
    ("data:\n  params:\n    max_num_frame: 9\n",
     "data.params.max_num_frame is not a parameter of data_video.SFTDataset; did you mean max_num_frames?"),
    ("data:\n  param:\n    max_num_frames: 9\n", "data.param is not a known key; did you mean params?"),
    ("model:\n  scale_facter: 0.7\n", "model.scale_facter is not a known key; did you mean scale_factor?"),
    ("model:\n  network_config:\n    params:\n      num_layer: 2\n",
     "model.network_config.params.num_layer is not a parameter of dit_video_concat.DiffusionTransformer; "
     "did you mean num_layers?"),
    ("model:\n  sampler_config:\n    params:\n      num_step: 2\n",
     "model.sampler_config.params.num_step is not a parameter of "
     "sgm.modules.diffusionmodules.sampling.VPSDEDPMPP2MSampler; did you mean num_steps?"),
    ("deepspeed:\n  gradient_clippin: 0.1\n",
     "deepspeed.gradient_clippin is a key DeepSpeed does not read; did you mean gradient_clipping?"),
    ("deepspeed:\n  zero_optimization:\n    stag: 2\n",
     "deepspeed.zero_optimization.stag is a key DeepSpeed does not take; did you mean stage?"),
    ("args:\n  train_itres: 3\n", "args.train_itres matches no command-line option; did you mean train_iters?"),
]


@pytest.fixture
def one_process(monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)  # restored after the test (train_video sets them)


def error_lines(entry, argv, capsys) -> list[str]:
    with pytest.raises(SystemExit) as done:
        entry.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("text, message", TYPOS)
def test_a_typo_in_any_section_is_one_line_naming_the_file_and_the_key(text, message, tmp_path, capsys, one_process,
                                                                       monkeypatch):
    monkeypatch.setattr(train_video, "SATVideoDiffusionEngine", None)  # nothing may be built
    mine = tmp_path / "mine.yaml"
    mine.write_text(text)
    argv = ["--base", "configs/tiny/cogvideox_tiny_lora.yaml", "configs/tiny/sft_tiny.yaml", str(mine), "--seed", "1"]
    assert error_lines(train_video, argv, capsys) == [f"error: {mine}: {message}"]


def test_sampling_names_a_model_typo_the_same_way(tmp_path, capsys, one_process):
    mine = tmp_path / "mine.yaml"
    mine.write_text(TYPOS[3][0])
    argv = ["--base", "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/inference_tiny.yaml", str(mine)]
    assert error_lines(sample_video, argv, capsys) == [f"error: {mine}: {TYPOS[3][1]}"]


def test_precompute_names_a_data_typo_the_same_way(tmp_path, capsys, monkeypatch):
    import runpy
    import sys

    mine = tmp_path / "mine.yaml"
    mine.write_text(TYPOS[0][0])
    monkeypatch.setattr(sys, "argv", ["tools/precompute.py", "--base", "configs/tiny/cogvideox_tiny_lora.yaml",
                                      "configs/tiny/sft_tiny.yaml", str(mine), "--output", str(tmp_path / "cache")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path("tools/precompute.py", run_name="__main__")
    assert done.value.code == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [
        f"error: {mine}: {TYPOS[0][1]}"]
    assert not (tmp_path / "cache").exists()
