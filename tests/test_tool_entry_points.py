"""tools/*.py run as scripts: bad input ends in one `error:` line and exit status 2, no traceback."""

import re
import runpy
import sys

import pytest
import torch

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
        ("tools/make_tiny_data.py", ["--out", "{tmp}/d", "--clips", "0"], "--clips is 0; expected an integer >= 1"),
        ("tools/convert_weight_sat2hf.py", ["--sat-config", "configs/tiny/sft_tiny.yaml", "--checkpoint", "{tmp}", "--output", "{tmp}/o"],
         "configs/tiny/sft_tiny.yaml has no model.network_config.params.modules: expected a model YAML"),
        ("tools/merge_lora.py", ["--config", "configs/tiny/sft_tiny.yaml", "--checkpoint", "{tmp}", "--output", "{tmp}/o"],
         "configs/tiny/sft_tiny.yaml has no model.network_config.params.modules: expected a model YAML"),


        ("tools/export_diffusers_pipeline.py", ["--base", "{tmp}/none.yaml", "--checkpoint", "{tmp}", "--output", "{tmp}/o"],
         "--base '{tmp}/none.yaml' does not exist"),
        ("tools/import_diffusers_pipeline.py", ["{tmp}/pipe", "--output", "{tmp}/o"], "{tmp}/pipe/model_index.json not found"),
    ],
)
def test_bad_input_is_one_message(monkeypatch, capsys, tmp_path, script, argv, message):
    line = run_tool(monkeypatch, capsys, script, *(arg.format(tmp=tmp_path) for arg in argv))
    assert line.startswith(f"error: {message.format(tmp=tmp_path)}")


@pytest.mark.slow
def test_convert_vae_help_runs_as_a_script(tmp_path):
    """`python tools/convert_vae.py --help` from any folder (it used to work only with `-m`)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "convert_vae.py"
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "to-diffusers" in done.stdout and "to-sat" in done.stdout


@pytest.mark.parametrize("command, arguments", [("to-diffusers", ["sat_file", "out_dir", "--scaling-factor"]),
                                                ("to-sat", ["diffusers_dir", "out_file"])])
def test_convert_vae_subcommands_document_their_arguments(monkeypatch, capsys, command, arguments):
    monkeypatch.setattr(sys, "argv", ["tools/convert_vae.py", command, "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path("tools/convert_vae.py", run_name="__main__")
    assert done.value.code == 0
    text = capsys.readouterr().out
    arguments_part = text[text.index("positional arguments:"):]
    for argument in arguments:  # the name, then its description on the same or the next line
        assert re.search(rf"^  {argument}( [A-Z_]+)?( {{2,}}\S|\n {{4,}}\S)", arguments_part, re.MULTILINE), (argument, text)


@pytest.fixture(scope="module")
def vae_files(tmp_path_factory):
    """A tiny SAT VAE file, its diffusers folder, and damaged variants of both."""
    from omegaconf import OmegaConf

    from sgm.util import instantiate_from_config
    from interop.vae_keys import save_diffusers

    root = tmp_path_factory.mktemp("vae")
    config = OmegaConf.to_container(OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model.first_stage_config, resolve=True)
    config["params"]["ckpt_path"] = None
    state = dict(instantiate_from_config(config).state_dict())
    torch.save({"state_dict": state}, root / "3d-vae.pt")
    torch.save({"state_dict": {**state, "encoder.extra.weight": torch.zeros(1)}}, root / "extra.pt")
    (root / "empty.pt").write_bytes(b"")
    save_diffusers(state, str(root / "hf"))
    weights = (root / "hf" / "diffusion_pytorch_model.safetensors").read_bytes()
    (root / "hf_cut").mkdir()
    (root / "hf_cut" / "config.json").write_bytes((root / "hf" / "config.json").read_bytes())
    (root / "hf_cut" / "diffusion_pytorch_model.safetensors").write_bytes(weights[:-100])
    (root / "a_file").write_text("")
    return root


@pytest.mark.parametrize(
    "argv, message",
    [
        (["to-diffusers", "{root}/empty.pt", "{tmp}/out"], "{root}/empty.pt is empty; expected a CogVideoX VAE file"),
        (["to-diffusers", "{root}/extra.pt", "{tmp}/out"], "SAT VAE key 'encoder.extra.weight' has no diffusers counterpart"),
        (["to-diffusers", "{root}/3d-vae.pt", "{root}/a_file/out"], "out_dir '{root}/a_file/out' cannot be created"),
        (["to-sat", "{root}/hf_cut", "{tmp}/back.pt"], "{root}/hf_cut/diffusion_pytorch_model.safetensors is not a complete safetensors file"),
        (["to-sat", "{tmp}", "{tmp}/back.pt"], "{tmp}/config.json not found; expected a diffusers AutoencoderKLCogVideoX folder"),
        (["to-sat", "{root}/hf", "{root}/a_file/back.pt"], "out_file's folder '{root}/a_file' cannot be created"),
    ],
)
def test_convert_vae_bad_input_is_one_message(monkeypatch, capsys, tmp_path, vae_files, argv, message):
    line = run_tool(monkeypatch, capsys, "tools/convert_vae.py", *(a.format(tmp=tmp_path, root=vae_files) for a in argv))
    assert line.startswith(f"error: {message.format(tmp=tmp_path, root=vae_files)}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "back.pt").exists()


@pytest.mark.parametrize("config, out", [("cogvideox_tiny", "tiny_weights"), ("cogvideox_tiny_lora", "tiny_weights"),
                                         ("cogvideox_tiny_5b", "tiny_weights_5b"), ("cogvideox_tiny_i2v", "tiny_weights_i2v"),
                                         ("cogvideox_tiny_i2v_lora", "tiny_weights_i2v")])
def test_make_tiny_weights_default_out_is_where_the_config_reads_its_weights(config, out):
    """The README's first line (no --out, the 2B config) keeps writing tiny_weights/; the 5B config no longer does."""
    from omegaconf import OmegaConf

    from tiny.weights import default_out

    path = f"configs/tiny/{config}.yaml"
    assert default_out(path, OmegaConf.load(path).model) == out


def test_make_tiny_weights_without_out_writes_the_configs_folder(monkeypatch, tmp_path, capsys):
    from pathlib import Path

    from tools import make_tiny_weights

    config = str(Path("configs/tiny/cogvideox_tiny_5b.yaml").resolve())
    monkeypatch.chdir(tmp_path)
    make_tiny_weights.main(["--config", config])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_weights_5b"]
    assert capsys.readouterr().out.splitlines()[-3:] == [
        "wrote tiny_weights_5b/transformer", "wrote tiny_weights_5b/vae/3d-vae.pt", "wrote tiny_weights_5b/t5"]


def test_make_tiny_weights_refuses_to_overwrite_another_models_weights(monkeypatch, capsys, tmp_path):
    from checkpoints.sat_checkpoint import save_sat_checkpoint

    other = {"model.diffusion_model.mixins.pos_embed.pos_embedding": torch.zeros(1, 3, 4)}  # a sin-cos (2B) model's key
    save_sat_checkpoint(other, tmp_path / "w" / "transformer", 1)
    line = run_tool(monkeypatch, capsys, "tools/make_tiny_weights.py", "--config", "configs/tiny/cogvideox_tiny_5b.yaml",
                    "--out", str(tmp_path / "w"))
    # a folder make_tiny_weights.py did not write (no marker) is refused by the output-folder rule
    assert line == (f"error: --out '{tmp_path / 'w'}' holds files make_tiny_weights.py did not write (transformer/): "
                    "choose a new or empty folder, or pass --overwrite to replace only the files make_tiny_weights.py "
                    "writes there (the others are kept)")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["transformer"]


@pytest.mark.parametrize(
    "script, argv, option",
    [
        ("tools/convert_weight_sat2hf.py", ["--sat-config", "configs/tiny/cogvideox_tiny.yaml", "--checkpoint", "{tmp}/none",
                                            "--output", "{out}"], "--output"),
        ("tools/convert_weight_sat2hf.py", ["--sat-config", "configs/tiny/cogvideox_tiny.yaml", "--checkpoint", "{tmp}/none",
                                            "--output", "{tmp}/o", "--export-lora", "{out}"], "--export-lora"),
        ("tools/convert_weight_hf2sat.py", ["--diffusers", "{tmp}/none", "--output", "{out}"], "--output"),
        ("tools/merge_lora.py", ["--config", "configs/tiny/cogvideox_tiny_lora.yaml", "--checkpoint", "{tmp}/none",
                                 "--output", "{out}"], "--output"),
        ("tools/merge_lora.py", ["--config", "configs/tiny/cogvideox_tiny_lora.yaml", "--checkpoint", "{tmp}/none",
                                 "--output", "{tmp}/o", "--export-lora", "{out}"], "--export-lora"),
        ("tools/precompute.py", ["--base", "{tmp}/none.yaml", "--output", "{out}"], "--output"),
        ("tools/make_tiny_weights.py", ["--out", "{out}"], "--out"),
        ("tools/make_tiny_data.py", ["--out", "{out}"], "--out"),
    ],
)
def test_output_folders_are_checked_before_anything_is_read(monkeypatch, capsys, tmp_path, script, argv, option):
    """The inputs do not exist: the output's message comes first, so nothing heavy was loaded before it."""
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "out"
    line = run_tool(monkeypatch, capsys, script, *(arg.format(tmp=tmp_path, out=out) for arg in argv))
    assert line == f"error: {option} '{out}' cannot be created: '{tmp_path / 'a_file'}' is a file, not a folder"


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    """A tiny diffusers transformer folder (converted from a SAT checkpoint) and a LoRA run of the tiny 2B model."""
    from omegaconf import OmegaConf
    from test_dit_support import build_tiny, tiny_network_config

    from checkpoints.sat_checkpoint import save_sat_checkpoint
    from tools import convert_weight_sat2hf

    root = tmp_path_factory.mktemp("hf")
    OmegaConf.save({"model": {"network_config": tiny_network_config("basic")}}, root / "basic.yaml")
    OmegaConf.save({"model": {"network_config": {**tiny_network_config("rotary"), "params": {
        **tiny_network_config("rotary")["params"],
        "modules": {**tiny_network_config("rotary")["params"]["modules"],
                    "lora_config": tiny_network_config("lora")["params"]["modules"]["lora_config"]}}}}}, root / "rotary_lora.yaml")
    save_sat_checkpoint({"model.diffusion_model." + k: v for k, v in build_tiny("basic").state_dict().items()}, root / "sat", 1)
    save_sat_checkpoint({"model.diffusion_model." + k: v for k, v in build_tiny("lora").state_dict().items()}, root / "lora", 1)
    convert_weight_sat2hf.main(["--sat-config", str(root / "basic.yaml"), "--checkpoint", str(root / "sat"), "--output", str(root / "hf")])
    weights = (root / "hf" / "diffusion_pytorch_model.safetensors").read_bytes()
    for name, config, content in [("cut", None, weights[: len(weights) // 2]), ("empty", None, b""),
                                  ("badjson", b'{"num_layers": 2,', weights)]:
        (root / name).mkdir()
        (root / name / "config.json").write_bytes(config or (root / "hf" / "config.json").read_bytes())
        (root / name / "diffusion_pytorch_model.safetensors").write_bytes(content)
    return root


@pytest.mark.parametrize("name, message", [
    ("cut", "{root}/cut/diffusion_pytorch_model.safetensors is not a complete safetensors file (its tensors need "),
    ("empty", "{root}/empty/diffusion_pytorch_model.safetensors is empty; expected the weights of a diffusers "),
    ("badjson", "{root}/badjson/config.json is not valid JSON (line 1, column 18: Expecting property name enclosed in double quotes)"),
])
def test_damaged_diffusers_folder_is_one_message(monkeypatch, capsys, tmp_path, diffusers_folder, name, message):
    line = run_tool(monkeypatch, capsys, "tools/convert_weight_hf2sat.py", "--diffusers", str(diffusers_folder / name),
                    "--output", str(tmp_path / "out"))
    assert line.startswith(f"error: {message.format(root=diffusers_folder)}")
    assert not (tmp_path / "out").exists()


def test_hf2sat_and_merge_say_what_they_wrote(monkeypatch, capsys, tmp_path, diffusers_folder):
    from tools import convert_weight_hf2sat, merge_lora

    convert_weight_hf2sat.main(["--diffusers", str(diffusers_folder / "hf"), "--output", str(tmp_path / "sat"), "--iteration", "5"])
    assert capsys.readouterr().out.splitlines() == [
        f"wrote the SAT transformer checkpoint (53 tensors) {tmp_path / 'sat' / '5' / 'mp_rank_00_model_states.pt'}"]
    from omegaconf import OmegaConf
    from test_dit_support import tiny_network_config

    OmegaConf.save({"model": {"network_config": tiny_network_config("lora")}}, tmp_path / "lora.yaml")
    merge_lora.main(["--config", str(tmp_path / "lora.yaml"), "--checkpoint", str(diffusers_folder / "lora"),
                     "--output", str(tmp_path / "merged"), "--export-lora", str(tmp_path / "peft")])
    assert capsys.readouterr().out.splitlines() == [
        f"wrote merged transformer (53 tensors, LoRA scale 1.0/4) to {tmp_path / 'merged' / '1' / 'mp_rank_00_model_states.pt'}",
        f"wrote diffusers/peft LoRA to {tmp_path / 'peft' / 'pytorch_lora_weights.safetensors'}"]


def test_merge_refuses_a_checkpoint_of_another_family(monkeypatch, capsys, tmp_path, diffusers_folder):
    """A 2B-style (sin-cos) LoRA run with a rotary LoRA config."""
    line = run_tool(monkeypatch, capsys, "tools/merge_lora.py", "--config", str(diffusers_folder / "rotary_lora.yaml"),
                    "--checkpoint", str(diffusers_folder / "lora"), "--output", str(tmp_path / "m"))
    assert line == (f"error: {diffusers_folder / 'lora'} is not a checkpoint of the model {diffusers_folder / 'rotary_lora.yaml'} "
                    "describes (another model family?): 1 key(s) not in that model: ['mixins.pos_embed.pos_embedding']")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "script, argv",
    [
        ("tools/convert_weight_sat2hf.py", ["--sat-config", "{yaml}", "--checkpoint", "{tmp}", "--output", "{tmp}/o"]),
        ("tools/merge_lora.py", ["--config", "{yaml}", "--checkpoint", "{tmp}", "--output", "{tmp}/o"]),
        ("tools/make_tiny_weights.py", ["--config", "{yaml}", "--out", "{tmp}/w"]),
        ("tools/precompute.py", ["--base", "{yaml}", "--output", "{tmp}/cache"]),
    ],
)
def test_config_file_that_is_not_yaml_names_its_line_and_column(monkeypatch, capsys, tmp_path, script, argv):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  network_config: {params: [1, 2}\n")
    line = run_tool(monkeypatch, capsys, script, *(arg.format(tmp=tmp_path, yaml=bad) for arg in argv))
    assert line.startswith(f"error: config file {bad}, line 2, column 33: not valid YAML: did not find expected ',' or ']'")


def test_checkpoint_without_a_transformer_is_one_message(monkeypatch, capsys, tmp_path):
    from checkpoints.sat_checkpoint import save_sat_checkpoint

    save_sat_checkpoint({"first_stage_model.decoder.conv_in.weight": torch.zeros(1)}, tmp_path / "vae_only", 1)
    line = run_tool(monkeypatch, capsys, "tools/convert_weight_sat2hf.py", "--sat-config", "configs/tiny/cogvideox_tiny.yaml",
                    "--checkpoint", str(tmp_path / "vae_only"), "--output", str(tmp_path / "o"))
    assert line == (f"error: {tmp_path / 'vae_only'}: no key starts with 'model.diffusion_model.', so it holds no CogVideoX "
                    "transformer (first keys: ['first_stage_model.decoder.conv_in.weight'])")


INTERNAL_NAMES = re.compile(r"InputError|ConfigError|Traceback|vae_modules\.|sgm\.|sat_checkpoint|_[a-z]+\(\)")


@pytest.mark.parametrize("script", ["tools/convert_vae.py", "tools/convert_weight_hf2sat.py", "tools/convert_weight_sat2hf.py",
                                    "tools/export_diffusers_pipeline.py", "tools/import_diffusers_pipeline.py",
                                    "tools/make_tiny_data.py", "tools/make_tiny_weights.py", "tools/merge_lora.py",
                                    "tools/precompute.py", "tools/set_lora_base.py", "tools/tiny_t5.py", "sample_video.py",
                                    "train_video.py"])
def test_help_says_what_the_user_types_not_internal_names(monkeypatch, capsys, script):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text and not INTERNAL_NAMES.search(text), INTERNAL_NAMES.search(text)
