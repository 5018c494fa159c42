"""The output-folder rule (checkpoints/output_folder.py, docs/output_folders.md) for every tool and entry point that writes one:
a user's file in the output folder survives (or the tool refuses in one line, exit 2), the tool's own earlier output
is replaced on a re-run, and an output that is an input, lies inside one or holds one is refused.

The rule's combinations are unit tests of the module; each tool runs in-process once or twice with the tiny models,
several assertions per run."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from checkpoints import output_folder
from input_errors import InputError
from checkpoints.output_folder import (
    MARKER_NAME,
    STAGING_NAME,
    check_not_an_input,
    check_output_file,
    check_output_folder,
    write_output,
)
from test_tool_entry_points import diffusers_folder, run_tool  # noqa: F401  (a fixture)

USER_FILE = "notes.txt"


def writer(files: dict[str, str]):
    def write(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    return write


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the marker and staging included) and its text."""
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def marker(folder: Path) -> dict:
    return json.loads((folder / MARKER_NAME).read_text())


def with_user_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / USER_FILE).write_text("mine")
    return folder


# ---------------------------------------------------------------- the rule, unit by unit

def test_new_folder_is_written_whole_with_its_marker(tmp_path):
    out = check_output_folder(tmp_path / "new" / "out", "tool.py", "--output")
    assert write_output(out, writer({"a/x": "1", "b": "2"})) == ["a/x", "b"]
    assert marker(tmp_path / "new" / "out") == {"tool": "tool.py", "files": ["a/x", "b"]}
    assert sorted(os.listdir(tmp_path / "new")) == ["out"]  # no temporary folder left beside it


def test_own_output_is_replaced_and_every_other_file_kept(tmp_path):
    folder = tmp_path / "out"
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"a/x": "1", "a/old": "2", "b": "3"}))
    with_user_file(folder)
    (folder / "a" / USER_FILE).write_text("mine too")
    again = check_output_folder(folder, "tool.py", "--output")  # no --overwrite: the folder holds its own output
    assert again.earlier == ("a/old", "a/x", "b")
    write_output(again, writer({"a/x": "new", "c/y": "4"}))
    assert tree(folder) == {MARKER_NAME: tree(folder)[MARKER_NAME], "a/notes.txt": "mine too", "a/x": "new",
                            "c/y": "4", USER_FILE: "mine"}  # a/old and b (the earlier output's) are gone
    assert marker(folder)["files"] == ["a/x", "c/y"]


def test_earlier_output_folders_left_empty_are_removed(tmp_path):
    folder = tmp_path / "out"
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"1/model.pt": "a", "latest": "1"}))
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"2/model.pt": "b", "latest": "2"}))
    assert sorted(os.listdir(folder)) == [MARKER_NAME, "2", "latest"]


@pytest.mark.parametrize("content, whose", [({USER_FILE: "mine"}, "files tool.py did not write (notes.txt)"),
                                            (None, "the output of other.py (x)")])
def test_a_folder_of_someone_else_is_refused_and_overwrite_keeps_its_files(tmp_path, content, whose):
    folder = tmp_path / "out"
    if content is None:
        write_output(check_output_folder(folder, "other.py", "--output"), writer({"x": "theirs"}))
    else:
        writer(content)(with_user_file(folder))
    before = tree(folder)
    with pytest.raises(InputError) as refused:
        check_output_folder(folder, "tool.py", "--output")
    assert str(refused.value) == (f"--output {str(folder)!r} holds {whose}: choose a new or empty folder, or pass "
                                  "--overwrite to replace only the files tool.py writes there (the others are kept)")
    assert tree(folder) == before
    write_output(check_output_folder(folder, "tool.py", "--output", overwrite=True), writer({"x": "new", "y": "1"}))
    kept = {name: text for name, text in before.items() if name not in (MARKER_NAME, "x")}
    assert {name: tree(folder)[name] for name in kept} == kept
    assert tree(folder)["x"] == "new" and marker(folder) == {"tool": "tool.py", "files": ["x", "y"]}
    check_output_folder(folder, "tool.py", "--output")  # now its own output: no --overwrite needed


def test_an_empty_folder_is_taken(tmp_path):
    (tmp_path / "out").mkdir()
    write_output(check_output_folder(tmp_path / "out", "tool.py", "--output"), writer({"x": "1"}))
    assert tree(tmp_path / "out")["x"] == "1"


@pytest.mark.parametrize("output, relation", [("in", "is"), ("in/sub", "lies inside"), (".", "contains")])
def test_an_output_overlapping_an_input_is_refused_even_with_overwrite(tmp_path, output, relation):
    (tmp_path / "in").mkdir()
    out = tmp_path / output
    with pytest.raises(InputError) as refused:
        check_output_folder(out, "tool.py", "--output", {"the --checkpoint": tmp_path / "in"}, overwrite=True)
    assert str(refused.value) == (f"--output {str(out)!r} {relation} the --checkpoint {str(tmp_path / 'in')!r}: writing "
                                  "there could change what is read; choose another folder")
    if relation == "contains":  # outputs that only add new files (--save, --output-dir) may hold an input
        check_not_an_input(out, "--output-dir", [("the prompt file", tmp_path / "in")], contains_allowed=True)


def test_overlap_is_judged_on_resolved_paths(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "in")
    with pytest.raises(InputError, match="is the input"):
        check_not_an_input(tmp_path / "in" / ".." / "link", "--output", {"the input": tmp_path / "in"})
    check_not_an_input(tmp_path / "input2", "--output", {"the input": tmp_path / "in"})  # a shared prefix only


def test_a_failed_write_leaves_the_folder_as_it_was(tmp_path):
    folder = tmp_path / "out"
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"x": "1"}))
    with_user_file(folder)
    before = tree(folder)

    def failing(staging: Path) -> None:
        (staging / "x").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_output(check_output_folder(folder, "tool.py", "--output"), failing)
    assert tree(folder) == before and not (folder / STAGING_NAME).exists()


def test_a_kill_while_files_move_is_completed_by_the_next_check(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"old": "0", "x": "1"}))
    with_user_file(folder)
    real_replace, moves = os.replace, []

    def killed_after_one_move(source, target):
        if moves:
            raise KeyboardInterrupt
        moves.append(target)
        real_replace(source, target)

    monkeypatch.setattr(output_folder.os, "replace", killed_after_one_move)
    with pytest.raises(KeyboardInterrupt):
        write_output(check_output_folder(folder, "tool.py", "--output"), writer({"x": "2", "y": "3"}))
    monkeypatch.setattr(output_folder.os, "replace", real_replace)
    assert (folder / STAGING_NAME / MARKER_NAME).is_file()  # the complete staging folder is kept
    assert check_output_folder(folder, "tool.py", "--output").earlier == ("x", "y")  # completed first
    assert tree(folder) == {MARKER_NAME: tree(folder)[MARKER_NAME], USER_FILE: "mine", "x": "2", "y": "3"}


def test_an_incomplete_staging_folder_is_dropped(tmp_path):
    folder = tmp_path / "out"
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"x": "1"}))
    (folder / STAGING_NAME).mkdir()
    (folder / STAGING_NAME / "x").write_text("half")  # killed while writing: no marker in the staging folder
    assert check_output_folder(folder, "tool.py", "--output").earlier == ("x",)
    assert tree(folder) == {MARKER_NAME: tree(folder)[MARKER_NAME], "x": "1"}


def test_a_file_where_a_folder_is_written_is_refused_before_anything_moves(tmp_path):
    folder = with_user_file(tmp_path / "out")
    (folder / "transformer").write_text("a user's file")
    output = check_output_folder(folder, "tool.py", "--output", overwrite=True)
    with pytest.raises(InputError, match=f"cannot write transformer/latest into {folder}: {folder / 'transformer'} is a file"):
        write_output(output, writer({"transformer/latest": "1", "z": "2"}))
    assert tree(folder) == {USER_FILE: "mine", "transformer": "a user's file"}


def test_a_users_file_where_the_tool_now_writes_one_is_replaced_only_with_overwrite(tmp_path):
    folder = tmp_path / "out"
    write_output(check_output_folder(folder, "tool.py", "--output"), writer({"x": "1"}))
    (folder / "lora").mkdir()
    (folder / "lora" / "adapter").write_text("mine")  # where the next run (an adapter export) writes
    with pytest.raises(InputError, match="cannot write lora/adapter into .*: a file of that name is there that this "
                                         "tool did not write; nothing was changed"):
        write_output(check_output_folder(folder, "tool.py", "--output"), writer({"x": "2", "lora/adapter": "new"}))
    assert tree(folder)["x"] == "1" and tree(folder)["lora/adapter"] == "mine"
    write_output(check_output_folder(folder, "tool.py", "--output", overwrite=True),
                 writer({"x": "2", "lora/adapter": "new"}))
    assert tree(folder)["lora/adapter"] == "new"


def test_output_file_exists_only_with_overwrite(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out.pt").write_text("old")
    with pytest.raises(InputError, match=f"out_file {str(tmp_path / 'out.pt')!r} exists: choose another path, or pass "
                                         "--overwrite to replace it"):
        check_output_file(tmp_path / "out.pt", "out_file", {}, overwrite=False)
    check_output_file(tmp_path / "out.pt", "out_file", {}, overwrite=True)
    with pytest.raises(InputError, match="lies inside diffusers_dir"):
        check_output_file(tmp_path / "in" / "x.pt", "out_file", {"diffusers_dir": tmp_path / "in"}, overwrite=True)
    with pytest.raises(InputError, match="is a folder; expected the path of the file to write"):
        check_output_file(tmp_path / "in", "out_file", {}, overwrite=True)


def test_a_marker_naming_files_outside_its_folder_is_not_ours(tmp_path):
    folder = with_user_file(tmp_path / "out")
    (tmp_path / "elsewhere").write_text("keep")
    (folder / MARKER_NAME).write_text(json.dumps({"tool": "tool.py", "files": ["../elsewhere"]}))
    with pytest.raises(InputError, match="holds files tool.py did not write"):
        check_output_folder(folder, "tool.py", "--output")
    write_output(check_output_folder(folder, "tool.py", "--output", overwrite=True), writer({"x": "1"}))
    assert (tmp_path / "elsewhere").read_text() == "keep"


# ---------------------------------------------------------------- the tools

def refused(monkeypatch, capsys, script: str, *argv) -> str:
    """The one `error:` line (exit 2) of `script` run as a script."""
    return run_tool(monkeypatch, capsys, script, *map(str, argv))


def test_make_tiny_weights(monkeypatch, capsys, tmp_path):
    from tools import make_tiny_weights

    config = tmp_path / "configs" / "tiny.yaml"
    config.parent.mkdir()
    shutil.copy("configs/tiny/cogvideox_tiny.yaml", config)
    out = with_user_file(tmp_path / "weights")
    assert "holds files make_tiny_weights.py did not write (notes.txt)" in refused(
        monkeypatch, capsys, "tools/make_tiny_weights.py", "--config", config, "--out", out)
    assert refused(monkeypatch, capsys, "tools/make_tiny_weights.py", "--config", config, "--out", config.parent) == (
        f"error: --out {str(config.parent)!r} contains the --config {str(config)!r}: writing there could change what "
        "is read; choose another folder")
    make_tiny_weights.main(["--config", str(config), "--out", str(out), "--overwrite"])
    first = (out / "transformer" / "1" / "mp_rank_00_model_states.pt").stat().st_mtime_ns
    make_tiny_weights.main(["--config", str(config), "--out", str(out), "--seed", "1"])  # its own output: replaced
    assert (out / "transformer" / "1" / "mp_rank_00_model_states.pt").stat().st_mtime_ns != first
    assert (out / USER_FILE).read_text() == "mine"
    assert sorted(os.listdir(out)) == [MARKER_NAME, USER_FILE, "t5", "transformer", "vae"]


def test_tiny_t5(monkeypatch, capsys, tmp_path):
    from tools import tiny_t5

    out = with_user_file(tmp_path / "t5")
    assert "holds files tiny_t5.py did not write (notes.txt)" in refused(monkeypatch, capsys, "tools/tiny_t5.py", out)
    for extra in (["--overwrite"], ["--seed", "1"]):  # then its own output: replaced
        monkeypatch.setattr("sys.argv", ["tools/tiny_t5.py", str(out), *extra])
        tiny_t5.main()
    assert marker(out)["files"] == sorted(name for name in os.listdir(out) if name not in (MARKER_NAME, USER_FILE))
    assert (out / USER_FILE).read_text() == "mine"


def test_make_tiny_data(monkeypatch, capsys, tmp_path):
    from tools import make_tiny_data

    out = with_user_file(tmp_path / "data")
    assert "holds files make_tiny_data.py did not write (notes.txt)" in refused(
        monkeypatch, capsys, "tools/make_tiny_data.py", "--out", out)
    make_tiny_data.main(["--out", str(out), "--overwrite", "--clips", "2"])
    assert marker(out)["files"] == ["labels/clip0.txt", "labels/clip1.txt", "videos/clip0.mp4", "videos/clip1.mp4"]
    make_tiny_data.main(["--out", str(out)])  # its own output: replaced, the user's file kept
    assert marker(out)["files"] == ["labels/waves.txt", "videos/waves.mp4"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        MARKER_NAME, "labels/waves.txt", USER_FILE, "videos/waves.mp4"]
    assert (out / USER_FILE).read_text() == "mine"


def test_convert_weight_hf2sat(monkeypatch, capsys, tmp_path, diffusers_folder):  # noqa: F811
    from tools import convert_weight_hf2sat

    hf, out = diffusers_folder / "hf", with_user_file(tmp_path / "sat")
    assert "holds files convert_weight_hf2sat.py did not write" in refused(
        monkeypatch, capsys, "tools/convert_weight_hf2sat.py", "--diffusers", hf, "--output", out)
    for inside in (hf, hf / "sub", diffusers_folder):
        assert "the --diffusers folder" in refused(monkeypatch, capsys, "tools/convert_weight_hf2sat.py", "--diffusers",
                                                   hf, "--output", inside)
    convert_weight_hf2sat.main(["--diffusers", str(hf), "--output", str(out), "--iteration", "5", "--overwrite"])
    convert_weight_hf2sat.main(["--diffusers", str(hf), "--output", str(out), "--iteration", "7"])
    assert sorted(os.listdir(out)) == [MARKER_NAME, "7", "latest", USER_FILE]  # iteration 5 was its own: replaced
    assert (out / "latest").read_text() == "7" and (out / USER_FILE).read_text() == "mine"


def test_convert_weight_sat2hf_and_merge_lora(monkeypatch, capsys, tmp_path, diffusers_folder):  # noqa: F811
    from omegaconf import OmegaConf
    from test_dit_support import tiny_network_config

    from tools import convert_weight_sat2hf, merge_lora

    lora_yaml = tmp_path / "lora.yaml"
    OmegaConf.save({"model": {"network_config": tiny_network_config("lora")}}, lora_yaml)
    lora = diffusers_folder / "lora"
    out, peft = with_user_file(tmp_path / "hf"), with_user_file(tmp_path / "peft")
    sat2hf = ["tools/convert_weight_sat2hf.py", "--sat-config", lora_yaml, "--checkpoint", lora, "--merge-lora"]
    assert "holds files convert_weight_sat2hf.py did not write" in refused(monkeypatch, capsys, *sat2hf, "--output", out)
    for output, relation in ((lora, "is"), (lora / "hf", "lies inside"), (diffusers_folder, "contains")):
        assert f"--output {str(output)!r} {relation} the --checkpoint" in refused(monkeypatch, capsys, *sat2hf,
                                                                                  "--output", output)
    assert refused(monkeypatch, capsys, *sat2hf, "--output", tmp_path / "x", "--export-lora", tmp_path / "x") == (
        f"error: --export-lora {str(tmp_path / 'x')!r} is the --output {str(tmp_path / 'x')!r}: writing there could "
        "change what is read; choose another folder")
    run = [str(arg) for arg in sat2hf[1:]] + ["--output", str(out), "--export-lora", str(peft)]
    convert_weight_sat2hf.main(run + ["--overwrite"])
    convert_weight_sat2hf.main(run)  # its own output in both folders: replaced
    assert sorted(os.listdir(out)) == [MARKER_NAME, "config.json", "diffusion_pytorch_model.safetensors", USER_FILE]
    assert sorted(os.listdir(peft)) == [MARKER_NAME, USER_FILE, "pytorch_lora_weights.safetensors"]

    merged, merged_peft = with_user_file(tmp_path / "merged"), tmp_path / "merged-peft"
    merge = ["tools/merge_lora.py", "--config", lora_yaml, "--checkpoint", lora]
    assert "holds files merge_lora.py did not write" in refused(monkeypatch, capsys, *merge, "--output", merged)
    for output, relation in ((lora, "is"), (lora / "1", "lies inside"), (diffusers_folder, "contains")):
        assert f"{relation} the --checkpoint" in refused(monkeypatch, capsys, *merge, "--output", output)
    assert "holds the output of convert_weight_sat2hf.py" in refused(monkeypatch, capsys, *merge, "--output",
                                                                     tmp_path / "m", "--export-lora", peft)
    run = [str(arg) for arg in merge[1:]] + ["--output", str(merged), "--export-lora", str(merged_peft)]
    merge_lora.main(run + ["--overwrite"])
    merge_lora.main(run)
    assert sorted(os.listdir(merged)) == [MARKER_NAME, "1", "latest", USER_FILE]
    assert sorted(os.listdir(merged_peft)) == [MARKER_NAME, "pytorch_lora_weights.safetensors"]


def test_convert_vae(monkeypatch, capsys, tmp_path, tiny_models):
    from tools import convert_vae

    out = with_user_file(tmp_path / "vae-hf")
    assert "holds files convert_vae.py did not write" in refused(
        monkeypatch, capsys, "tools/convert_vae.py", "to-diffusers", tiny_models.vae, out)
    assert "contains sat_file" in refused(monkeypatch, capsys, "tools/convert_vae.py", "to-diffusers", tiny_models.vae,
                                          tiny_models.vae.parent)
    convert_vae.main(["to-diffusers", str(tiny_models.vae), str(out), "--overwrite"])
    convert_vae.main(["to-diffusers", str(tiny_models.vae), str(out)])
    assert sorted(os.listdir(out)) == [MARKER_NAME, "config.json", "diffusion_pytorch_model.safetensors", USER_FILE]

    back = tmp_path / "3d-vae.pt"
    back.write_text("a user's file")
    assert refused(monkeypatch, capsys, "tools/convert_vae.py", "to-sat", out, back) == (
        f"error: out_file {str(back)!r} exists: choose another path, or pass --overwrite to replace it")
    assert "lies inside diffusers_dir" in refused(monkeypatch, capsys, "tools/convert_vae.py", "to-sat", out,
                                                  out / "3d-vae.pt")
    convert_vae.main(["to-sat", str(out), str(back), "--overwrite"])
    assert set(torch.load(back)["state_dict"]) == set(torch.load(tiny_models.vae)["state_dict"])


def test_export_and_import_diffusers_pipeline(monkeypatch, capsys, tmp_path, tiny_models):
    from tools import export_diffusers_pipeline, import_diffusers_pipeline

    config = tiny_models.write_config(tmp_path / "model.yaml")
    export = ["tools/export_diffusers_pipeline.py", "--base", config, "--checkpoint", tiny_models.transformer]
    pipe = with_user_file(tmp_path / "pipe")
    assert "holds files export_diffusers_pipeline.py did not write" in refused(monkeypatch, capsys, *export, "--output", pipe)
    for output, relation in ((tiny_models.transformer, "is"), (tiny_models.transformer / "x", "lies inside"),
                             (tiny_models.root, "contains")):
        assert f"{relation} the --checkpoint" in refused(monkeypatch, capsys, *export, "--output", output)
    run = [str(arg) for arg in export[1:]] + ["--output", str(pipe)]
    export_diffusers_pipeline.main(run + ["--overwrite"])
    export_diffusers_pipeline.main(run)
    assert (pipe / USER_FILE).read_text() == "mine" and (pipe / "model_index.json").is_file()

    for output, relation in ((pipe, "is"), (pipe / "sat", "lies inside"), (tmp_path, "contains")):
        assert refused(monkeypatch, capsys, "tools/import_diffusers_pipeline.py", pipe, "--output", output) == (
            f"error: --output {str(output)!r} {relation} the pipeline folder {str(pipe)!r}: writing there could change "
            "what is read; choose another folder")
    sat = with_user_file(tmp_path / "sat")
    assert "holds files import_diffusers_pipeline.py" in refused(monkeypatch, capsys, "tools/import_diffusers_pipeline.py",
                                                                 pipe, "--output", sat)
    import_diffusers_pipeline.main([str(pipe), "--output", str(sat), "--overwrite"])
    import_diffusers_pipeline.main([str(pipe), "--output", str(sat), "--iteration", "3"])
    assert sorted(os.listdir(sat / "transformer")) == ["3", "latest"]  # the first import's 1000/ was its own
    assert (sat / USER_FILE).read_text() == "mine" and (pipe / "model_index.json").is_file()


def test_set_lora_base_refuses_the_checkpoint_as_its_base_and_keeps_other_files(monkeypatch, capsys, tmp_path,
                                                                                 tiny_models):
    from checkpoints.sat_checkpoint import LORA_BASE_KEY, read_checkpoint_states, save_sat_checkpoint
    from tools.set_lora_base import set_lora_base

    run = tmp_path / "run"
    save_sat_checkpoint({"model.diffusion_model.x.matrix_A.0": torch.zeros(1)}, run, 2, lora_base=tmp_path / "gone")
    with_user_file(run)
    for base in (run, run / "2"):
        assert "the --checkpoint" in refused(monkeypatch, capsys, "tools/set_lora_base.py", "--checkpoint", run,
                                             "--base", base)
    set_lora_base(run, tiny_models.transformer)
    assert read_checkpoint_states(run / "2" / "mp_rank_00_model_states.pt")[LORA_BASE_KEY] == str(tiny_models.transformer)
    assert sorted(os.listdir(run)) == ["2", "latest", USER_FILE]


@pytest.mark.slow  # two precompute runs of a tiny dataset
def test_precompute(monkeypatch, capsys, tmp_path, tiny_models):
    from tiny.videos import write_dataset
    from test_latent_cache import FRAMES
    from tools import precompute

    data = write_dataset(tmp_path / "data", 1)
    paths = tiny_models.write_config(tmp_path / "model.yaml")
    (tmp_path / "frames.yaml").write_text(f"data: {{params: {{max_num_frames: {FRAMES}}}}}\n")
    base = ["--base", "configs/tiny/cogvideox_tiny_lora.yaml", "configs/tiny/sft_tiny.yaml", str(paths),
            str(tmp_path / "frames.yaml"), "--data", str(data)]
    for output, relation in ((data, "is"), (data / "cache", "lies inside"), (tmp_path, "contains")):
        assert f"{relation} the data folder" in refused(monkeypatch, capsys, "tools/precompute.py", *base, "--output", output)
    assert "lies inside the T5 folder" in refused(monkeypatch, capsys, "tools/precompute.py", *base, "--output",
                                                  tiny_models.t5 / "cache")
    cache = with_user_file(tmp_path / "cache")
    assert "is a non-empty folder that is not a latent cache" in refused(monkeypatch, capsys, "tools/precompute.py",
                                                                         *base, "--output", cache)
    precompute.main([*base, "--output", str(cache), "--overwrite"])
    item = cache / "items" / "clip0.safetensors"
    first = item.stat().st_mtime_ns
    precompute.main([*base, "--output", str(cache)])  # its own cache: complete items kept
    assert item.stat().st_mtime_ns == first and (cache / USER_FILE).read_text() == "mine"


# ---------------------------------------------------------------- the entry points

def test_sampling_keeps_an_earlier_runs_video_and_says_where_the_new_one_went(tiny_models, tmp_path, capsys,
                                                                            monkeypatch):
    """Two runs of one command line (the tiny model is built; the sampling call returns a small video): the second
    run's video goes beside the first's, and its `wrote` line names it."""
    import sample_video
    import video_sampling
    from test_entry_inputs import error_of, sampling_argv

    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    shades = iter([0.25, 0.75])
    monkeypatch.setattr(video_sampling, "generate_video", lambda *a: torch.full((3, 3, 16, 16), next(shades)))
    argv = sampling_argv(tiny_models, tmp_path)
    folder = tmp_path / "out" / "0_a_cat" / "0"
    with_user_file(tmp_path / "out")
    for run in range(2):
        sample_video.main(argv)
        written = folder / ("000000.mp4" if run == 0 else "000000-2.mp4")
        kept = "" if run == 0 else f" ({folder / '000000.mp4'} is an earlier run's video, kept)"
        assert capsys.readouterr().out.splitlines()[-1] == f"wrote {written}{kept}"
    assert sorted(os.listdir(folder)) == ["000000-2.mp4", "000000.mp4"]
    import imageio

    shades_read = [imageio.mimread(folder / name)[0].mean() for name in ("000000.mp4", "000000-2.mp4")]
    assert abs(shades_read[0] - 64) < 3 and abs(shades_read[1] - 191) < 3  # the first video is the first run's
    assert (tmp_path / "out" / USER_FILE).read_text() == "mine"
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path, "--output-dir", str(tiny_models.transformer / "v")),
                    capsys)
    assert line == (f"error: --output-dir {str(tiny_models.transformer / 'v')!r} lies inside the --load checkpoint "
                    f"{str(tiny_models.transformer)!r}: writing there could change what is read; choose another folder")


def test_training_save_inside_the_data_folder_is_refused_before_the_build(tmp_path, capsys, monkeypatch):
    import train_video
    from test_entry_inputs import TINY_MODEL, TINY_SFT, error_of

    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(train_video, "training_main", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "data").mkdir()
    override = tmp_path / "run.yaml"
    override.write_text(f"args: {{train_data: [{tmp_path / 'data'}], valid_data: null}}\n")
    line = error_of(train_video, ["--base", TINY_MODEL, TINY_SFT, str(override), "--save", str(tmp_path / "data" / "ckpts")],
                    capsys)
    assert line == (f"error: --save {str(tmp_path / 'data' / 'ckpts')!r} lies inside the data folder "
                    f"{str(tmp_path / 'data')!r}: writing there could change what is read; choose another folder")


def test_a_resumed_run_goes_on_in_its_folder_unless_that_holds_later_checkpoints(tmp_path):
    from training.run_folder import continued_run_folder

    run = tmp_path / "run"
    for name in ("2", "4", "4-ema", "video", "latest"):
        (run / name).mkdir(parents=True)
    assert continued_run_folder(run / "4", 4) == str(run)
    assert continued_run_folder(run / "2", 2) is None  # going on from 2 would replace 4

