"""tools/import_diffusers_pipeline.py: a diffusers pipeline folder -> our layout; export -> import is exact."""

import filecmp
import json

import pytest
import torch
from omegaconf import OmegaConf

from diffusion_video import SATVideoDiffusionEngine
from checkpoints.sat_checkpoint import checkpoint_path, load_sat_checkpoint, read_model_states
from sgm.util import instantiate_from_config
from test_diffusers_pipeline_export import TINY_5B, export
from tiny_models import build_engine, make_tiny_model_set
from tools import import_diffusers_pipeline
from interop import vae_keys
from interop.sat_to_diffusers import diffusers_config
from interop.diffusers_scheduler import DEFAULT_DISCRETIZATION, scheduler_for_sampler
from interop.image_latent_scale import invert_scale_latents
from tools.import_diffusers_pipeline import derive_config

# SAT's learned position table of the rotary (5B) variant, which the rotary model never reads (nor has diffusers).
UNUSED_TABLE = "model.diffusion_model.transformer.position_embeddings.weight"
SHIPPED = ["cogvideox_2b", "cogvideox_2b_lora", "cogvideox_5b", "cogvideox_5b_lora", "cogvideox_5b_i2v", "cogvideox_5b_i2v_lora",
           "cogvideox1.5_5b", "cogvideox1.5_5b_lora", "cogvideox1.5_5b_i2v", "cogvideox1.5_5b_i2v_lora"]


def vae_diffusers_config(model) -> dict:
    """The diffusers VAE config of a SAT config, read off its encoder and decoder built on the meta device, with the
    export's invert_scale_latents."""
    params = model["first_stage_config"]["params"]
    with torch.device("meta"):
        parts = {name: instantiate_from_config(params[f"{name}_config"]) for name in ("encoder", "decoder")}
    states = {f"{name}.{key}": value for name, part in parts.items() for key, value in part.state_dict().items()}
    return {**vae_keys.diffusers_config(states, scaling_factor=model["scale_factor"]),
            "invert_scale_latents": invert_scale_latents(model)[0]}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_survives_export_and_import(name):
    """The configs written from a shipped config's diffusers transformer, VAE and scheduler configs give it back."""
    template = f"configs/{name}.yaml"
    model = OmegaConf.to_container(OmegaConf.load(template), resolve=True)["model"]
    scheduler_name, scheduler = scheduler_for_sampler(model["sampler_config"])
    derived = derive_config(
        import_diffusers_pipeline.CONFIGS / f"{name}.yaml", diffusers_config(model["network_config"]),
        vae_diffusers_config(model), {"_class_name": scheduler_name, **scheduler},
        model["conditioner_config"]["params"]["emb_models"][0]["params"]["model_dir"], model["first_stage_config"]["params"]["ckpt_path"],
    )
    assert OmegaConf.to_container(derived, resolve=True) == OmegaConf.to_container(OmegaConf.load(template), resolve=True)


def model_view(model) -> dict:
    """What decides a config's model and schedule (the sizes its sampler runs at and the weight paths left out)."""
    first_stage = model["first_stage_config"]["params"]
    sampler = model["sampler_config"]
    return {
        "transformer": diffusers_config(model["network_config"]),
        "lora": model["network_config"]["params"]["modules"].get("lora_config"),
        "vae": {name: first_stage[f"{name}_config"] for name in ("encoder", "decoder")},
        "scale_factor": model["scale_factor"],
        # the effective schedules (a default written out or left out is the same schedule: the 1.5 templates set none)
        "schedules": [(node["target"], {**DEFAULT_DISCRETIZATION, **(node.get("params") or {})}) for node in (
            model["denoiser_config"]["params"]["discretization_config"],
            model["loss_fn_config"]["params"]["sigma_sampler_config"]["params"]["discretization_config"],
            sampler["params"]["discretization_config"])],
        "sampler": sampler["target"],
        "t5_length": model["conditioner_config"]["params"]["emb_models"][0]["params"]["max_length"],
        "image_latent_sampling_scale": model.get("image_latent_sampling_scale"),
        "ofs": model.get("ofs"),
    }


def round_trip(tmp_path, models, name: str):
    config = models.model_config()
    exported = export(tmp_path, config, models.transformer)
    import_diffusers_pipeline.main([exported, "--output", str(tmp_path / "imported")])
    imported = tmp_path / "imported"
    original_states = read_model_states(checkpoint_path(models.transformer)[0])
    imported_states = read_model_states(checkpoint_path(imported / "transformer")[0])
    assert original_states.keys() == imported_states.keys()
    for key, value in original_states.items():
        if key == UNUSED_TABLE and name != "cogvideox_2b":  # no diffusers counterpart: written as zeros, as the converter
            assert torch.equal(imported_states[key], torch.zeros_like(value))
            continue
        assert value.dtype == imported_states[key].dtype and torch.equal(value, imported_states[key]), key
    original_vae = torch.load(models.vae, weights_only=True)["state_dict"]
    imported_vae = torch.load(imported / "vae/3d-vae.pt", weights_only=True)["state_dict"]
    assert original_vae.keys() == imported_vae.keys()
    assert all(value.dtype == imported_vae[key].dtype and torch.equal(value, imported_vae[key]) for key, value in original_vae.items())
    t5_files = sorted(path.name for path in models.t5.iterdir())
    assert sorted(path.name for path in (imported / "t5-v1_1-xxl").iterdir()) == t5_files
    assert filecmp.cmpfiles(models.t5, imported / "t5-v1_1-xxl", t5_files, shallow=False)[0] == t5_files
    written = OmegaConf.load(imported / f"{name}.yaml").model
    assert model_view(OmegaConf.to_container(written, resolve=True)) == model_view(OmegaConf.to_container(config, resolve=True))
    assert written.conditioner_config.params.emb_models[0].params.model_dir == str(imported / "t5-v1_1-xxl")
    assert written.first_stage_config.params.ckpt_path == str(imported / "vae/3d-vae.pt")
    lora = OmegaConf.load(imported / f"{name}_lora.yaml").model
    assert lora.network_config.params.modules.lora_config == OmegaConf.load(f"configs/{name}_lora.yaml").model.network_config.params.modules.lora_config
    return imported, written


@pytest.mark.slow
@pytest.mark.parametrize("fixture, name", [("tiny_models", "cogvideox_2b"), ("tiny_i2v_models", "cogvideox_5b_i2v"),
                                           ("tiny_15_models", "cogvideox1.5_5b"), ("tiny_15_i2v_models", "cogvideox1.5_5b_i2v")])
def test_export_then_import_is_exact_and_the_config_builds_the_same_model(tmp_path, request, fixture, name):
    models = request.getfixturevalue(fixture)
    imported, written = round_trip(tmp_path, models, name)
    engine = SATVideoDiffusionEngine(argparse_namespace(written))
    load_sat_checkpoint(engine, str(imported / "transformer"))
    original = build_engine(models)
    in_channels = written.network_config.params.in_channels
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 14 if "1.5" in name else 13, in_channels, 8, 12, generator=generator)  # (b, t, c, h, w)
    context, timestep = torch.randn(1, 226, 32, generator=generator), torch.tensor([300])
    ofs = {"ofs": torch.tensor([2.0])} if name == "cogvideox1.5_5b_i2v" else {}
    with torch.no_grad():
        ours = engine.eval().model.diffusion_model(x, timestep, context, **ofs)
        assert torch.equal(ours, original.model.diffusion_model(x, timestep, context, **ofs))


def test_export_then_import_is_exact_for_5b(tmp_path):
    round_trip(tmp_path, make_tiny_model_set(tmp_path / "weights", config_path=TINY_5B), "cogvideox_5b")


@pytest.mark.parametrize("name, invert, written", [
    ("cogvideox1.5_5b_i2v", True, None),  # the release: the reference's z (diffusers: z / 0.7, noted)
    ("cogvideox1.5_5b_i2v", False, 0.7),  # diffusers feeds 0.7 z
    ("cogvideox_5b_i2v", False, None),  # the 1.0 release: 0.7 z on both sides
    ("cogvideox_5b_i2v", True, 1 / 0.7),
    ("cogvideox1.5_5b", False, None),  # text-to-video: not read
])
def test_invert_scale_latents_gives_the_sampling_image_latent_scale(name, invert, written):
    """The inverse of the export's choice; the note where the written config samples otherwise than diffusers."""
    template = import_diffusers_pipeline.CONFIGS / f"{name}.yaml"
    model = OmegaConf.to_container(OmegaConf.load(template), resolve=True)["model"]
    scheduler_name, scheduler = scheduler_for_sampler(model["sampler_config"])
    vae = {**vae_diffusers_config(model), "invert_scale_latents": invert}
    derived = derive_config(template, diffusers_config(model["network_config"]), vae, {"_class_name": scheduler_name, **scheduler},
                            "t5", "vae.pt").model
    assert derived.get("image_latent_sampling_scale") == written
    note = import_diffusers_pipeline.image_latent_note(derived, vae)
    assert (note is not None) == (name == "cogvideox1.5_5b_i2v" and invert)
    if note is not None:
        assert "1.42857 z" in note and "model.image_latent_sampling_scale: 1.4285714285714286" in note


def argparse_namespace(model_config):
    import argparse

    return argparse.Namespace(model_config=model_config, fp16=False, bf16=False)


def set_patch_size_t(folder):
    path = folder / "transformer/config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "patch_size_t": 3}))


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "scheduler/scheduler_config.json").unlink(), "scheduler_config.json not found"),
    (set_patch_size_t, "transformer/config.json: patch_size_t=3; a CogVideoX1.5 model has 2 (or null: CogVideoX 1.0)"),
])
def test_a_folder_it_cannot_import_is_one_error_line(tmp_path, tiny_models, capsys, damage, message):
    exported = export(tmp_path, tiny_models.model_config(), tiny_models.transformer)
    damage(tmp_path / "pipeline")
    with pytest.raises(SystemExit) as exit_info:
        with import_diffusers_pipeline.input_errors_as_messages():
            import_diffusers_pipeline.main([exported, "--output", str(tmp_path / "imported")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "imported").exists()


@pytest.mark.slow
def test_imported_configs_run_in_inference_sh_and_finetune_single_gpu_sh(tmp_path, tiny_models):
    """The written configs as the README runs them: sampling, and a LoRA fine-tune step from the written transformer."""
    from test_scripts import run_script
    from test_train_finetune import FRAMES, SFT, write_video

    exported = export(tmp_path, tiny_models.model_config(), tiny_models.transformer)
    import_diffusers_pipeline.main([exported, "--output", str(tmp_path / "imported")])
    imported = tmp_path / "imported"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    sampled = run_script("inference.sh", "--base", str(imported / "cogvideox_2b.yaml"), "configs/tiny/inference_tiny.yaml",
                         "--load", str(imported / "transformer"), "--input-file", str(prompts), "--output-dir",
                         str(tmp_path / "out"), "--sampling-num-frames", "3", "--seed", "4")
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert [path.name for path in (tmp_path / "out").rglob("*.mp4")] == ["000000.mp4"]

    write_video(tmp_path / "data", "wave", "colourful waves drifting to the left")
    override = tmp_path / "run.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"train_data": [str(tmp_path / "data")], "valid_data": None, "save": str(tmp_path / "ckpt"),
                 "train_iters": 1, "save_interval": 1, "log_interval": 1, "summary_dir": str(tmp_path)},
        "data": {"params": {"max_num_frames": FRAMES}}}), override)
    trained = run_script("finetune_single_gpu.sh", str(imported / "cogvideox_2b_lora.yaml"), SFT, str(override),
                         "--load", str(imported / "transformer"))
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "DONE" in trained.stdout and next((tmp_path / "ckpt").iterdir()).is_dir()


@pytest.mark.slow
def test_imported_15_i2v_config_samples_as_the_original_in_sample_video(tmp_path, tiny_15_i2v_models):
    """The written 1.5 I2V config as the README runs it (configs/tiny/inference_tiny_1.5_i2v.yaml, the image deciding
    the size), at the exported config's step count: the same video, frame for frame."""
    import decord
    from types import SimpleNamespace

    from test_sample_1_5 import run_script

    exported = export(tmp_path, tiny_15_i2v_models.model_config(), tiny_15_i2v_models.transformer)
    import_diffusers_pipeline.main([exported, "--output", str(tmp_path / "imported")])
    def imported_config(path):
        """The written config at the tiny config's 10 steps (a diffusers pipeline stores no step count: the written
        config keeps the template's 50)."""
        config = OmegaConf.load(tmp_path / "imported/cogvideox1.5_5b_i2v.yaml")
        config.model.sampler_config.params.num_steps = config.model.sampler_config.params.guider_config.params.num_steps = 10
        OmegaConf.save(config, path)
        return path

    imported = SimpleNamespace(write_config=imported_config, transformer=tmp_path / "imported/transformer")
    videos = []
    for name, models in (("original", tiny_15_i2v_models), ("sampled_imported", imported)):
        (tmp_path / name).mkdir()
        result = run_script(tmp_path / name, models, "configs/tiny/inference_tiny_1.5_i2v.yaml", "--seed", "42",
                            "--sampling-num-frames", "4")
        assert result.returncode == 0, result.stderr[-3000:]
        (path,) = list((tmp_path / name / "out").rglob("*.mp4"))
        videos.append(decord.VideoReader(str(path)).get_batch(list(range(9))).asnumpy())  # 4 latent frames: 9 frames
    assert videos[0].shape == (9, 64, 112, 3) and videos[0].std() > 1
    assert (videos[0] == videos[1]).all()
