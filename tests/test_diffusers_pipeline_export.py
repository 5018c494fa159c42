"""tools/export_diffusers_pipeline.py: the folder diffusers' pipelines load, and its videos against ours."""

import json

import pytest
import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline, CogVideoXPipeline
from omegaconf import OmegaConf
from PIL import Image

from image_to_video.conditioning import image_condition_pixels, image_latent
from checkpoints.sat_checkpoint import save_sat_checkpoint
from sgm.modules.diffusionmodules.discretizer import ZeroSNRDDPMDiscretization
from test_lora_5b import build_network
from test_sample_1_5 import write_image as write_sized_image
from test_sample_i2v import write_image
from tiny_models import build_engine, make_tiny_model_set
from tools import export_diffusers_pipeline
from interop import image_latent_scale, diffusers_scheduler
from interop.sat_to_diffusers import SAT_PREFIX
from video_sampling import Prompt, SamplingPlan, encode_prompt, generate_video, sample_seed

PROMPT = "a red fox trots across a snowy meadow"
# Step counts up to 100 at which diffusers' "trailing" spacing visits the SAT sampler's DDPM indices (computed once
# from both formulas; e.g. at 6 steps SAT visits 333 and diffusers 332).
AGREEING_STEP_COUNTS = [1, 2, 4, 5, 7, 8, 10, 11, 13, 20, 25, 40, 50, 77, 91, 100]
TINY_5B = "configs/tiny/cogvideox_tiny_5b.yaml"


def test_scheduler_config_is_the_released_one():
    """The CogVideoX-2b release's scheduler/scheduler_config.json values (snr_shift_scale 1.0 in the 5B ones)."""
    assert diffusers_scheduler.scheduler_config({"shift_scale": 3.0}) == dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=3.0, timestep_spacing="trailing",
        set_alpha_to_one=True, steps_offset=0, clip_sample=False,
    )


def test_trailing_spacing_formula_and_the_step_counts_where_it_agrees():
    scheduler = CogVideoXDPMScheduler(**diffusers_scheduler.scheduler_config({"shift_scale": 3.0}))
    for num_steps in range(1, 101):
        scheduler.set_timesteps(num_steps)
        assert diffusers_scheduler.diffusers_step_indices(num_steps).tolist() == scheduler.timesteps.tolist()
    assert [n for n in range(1, 101) if diffusers_scheduler.spacing_agrees(n)] == AGREEING_STEP_COUNTS


@pytest.mark.parametrize("shift_scale", [3.0, 1.0])
def test_scheduler_table_is_the_full_table_schedule(shift_scale):
    """The exported scheduler's alphas_cumprod == ZeroSNRDDPMDiscretization's 1000-entry table (rescale over the table)."""
    config = diffusers_scheduler.scheduler_config({"shift_scale": shift_scale})
    scheduler = CogVideoXDPMScheduler(**config)
    ours = ZeroSNRDDPMDiscretization(shift_scale=shift_scale).table().double() ** 2
    torch.testing.assert_close(scheduler.alphas_cumprod.double(), ours, atol=2e-6, rtol=0)
    assert diffusers_scheduler.discretization_params(scheduler.config) == {"shift_scale": shift_scale}


def sampling_config(models, config_path: str, num_steps: int, sampler: str = "VPSDEDPMPP2MSampler"):
    """The tiny config's model: section at `num_steps` with diffusers' full-table zero-SNR rescale."""
    config = models.model_config(config_path)
    config.sampler_config.target = f"sgm.modules.diffusionmodules.sampling.{sampler}"
    config.sampler_config.params.num_steps = config.sampler_config.params.guider_config.params.num_steps = num_steps
    config.sampler_config.params.discretization_config.params.rescale_selected_steps = False
    return config


def export(tmp_path, config, checkpoint, *extra) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "model.yaml"
    OmegaConf.save(OmegaConf.create({"model": config}), path)
    output = tmp_path / "pipeline"
    export_diffusers_pipeline.main(["--base", str(path), "--checkpoint", str(checkpoint), "--output", str(output), *extra])
    return str(output)


def pipe_call(pipe, cond, num_latent_frames, num_steps, noise, generator, **extra):
    height, width = 8 * noise.shape[-2], 8 * noise.shape[-1]
    with torch.no_grad():
        return pipe(
            prompt_embeds=cond["crossattn"], negative_prompt_embeds=torch.zeros_like(cond["crossattn"]), height=height,
            width=width, num_frames=4 * (num_latent_frames - 1) + 1, num_inference_steps=num_steps, guidance_scale=6,
            use_dynamic_cfg=True, latents=noise, generator=generator, **{"output_type": "pt", **extra},
        ).frames[0]  # (T, 3, H, W) in [0, 1], or the latents (t, c, h, w) with output_type="latent"


@pytest.mark.slow
@pytest.mark.parametrize("config_path, sampler", [(None, "VPSDEDPMPP2MSampler"), (None, "VideoDDIMSampler"), (TINY_5B, "VPSDEDPMPP2MSampler")])
def test_exported_pipeline_samples_our_video(tmp_path, tiny_models, config_path, sampler):
    """Same prompt embedding, same initial noise, same generator for the SDE sampler's draws: the same video."""
    models = tiny_models if config_path is None else make_tiny_model_set(tmp_path / "weights", config_path=config_path)
    num_steps, num_latent_frames = 4, 3
    config = sampling_config(models, config_path or models.config_path, num_steps, sampler)
    pipe = CogVideoXPipeline.from_pretrained(export(tmp_path, config, models.transformer))
    assert type(pipe.scheduler).__name__ == diffusers_scheduler.SCHEDULER_OF_SAMPLER[config.sampler_config.target]
    engine = build_engine(models, config)
    plan = SamplingPlan(num_latent_frames, 16, fps=8, samples_per_prompt=1, seed=3, output_dir="unused")
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed)  # (T, 3, H, W)

    replay = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, num_latent_frames, 16, 8, 12, generator=replay)  # (b, t, c, h, w), as engine.sample
    theirs = pipe_call(pipe, cond, num_latent_frames, num_steps, noise, replay)
    assert ours.shape == theirs.shape == (9, 3, 64, 96)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01


def test_exported_i2v_pipeline_samples_our_latents(tmp_path, tiny_i2v_models):
    """Image-to-video up to the final latents (the decode is the text-to-video test's): same image, noise, latents."""
    num_steps, num_latent_frames = 4, 13  # diffusers uses the learned table only at the configured length
    # DDIM: diffusers draws the image latent from the pipeline's generator and the SDE noise after it, where ours
    # draws the initial noise between the two; a deterministic sampler makes the comparison independent of that.
    config = sampling_config(tiny_i2v_models, tiny_i2v_models.config_path, num_steps, "VideoDDIMSampler")
    pipe = CogVideoXImageToVideoPipeline.from_pretrained(export(tmp_path, config, tiny_i2v_models.transformer))
    engine = build_engine(tiny_i2v_models, config)
    pixels = image_condition_pixels(write_image(tmp_path / "image.png"), (64, 96))
    cond, uc = encode_prompt(engine, PROMPT)
    seed = 5
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latent = image_latent(engine, pixels, num_latent_frames, generator)  # (1, t, c, h, w), the first draw
        cond, uc = {**cond, "concat": latent}, {**uc, "concat": latent}
        ours = engine.sample(cond, uc, 1, (num_latent_frames, 16, 8, 12), generator)  # (1, t, c, h, w)

    replay = torch.Generator().manual_seed(seed)
    torch.randn(1, 16, 1, 8, 12, generator=replay)  # the image latent's draw
    noise = torch.randn(1, num_latent_frames, 16, 8, 12, generator=replay)
    theirs = pipe_call(pipe, cond, num_latent_frames, num_steps, noise, torch.Generator().manual_seed(seed),
                       image=(pixels[None] + 1) / 2, output_type="latent")
    assert ours.shape == theirs[None].shape == (1, num_latent_frames, 16, 8, 12)
    assert (ours - theirs[None]).abs().max().item() < 1e-4
    assert ours.std() > 0.01


@pytest.mark.slow
def test_exported_15_pipeline_samples_our_video(tmp_path, tiny_15_models):
    """CogVideoX1.5 T2V, the SDE sampler: our 6 latent frames are 5 + the padding frame 0 that decoding drops;
    diffusers, asked for the 17 frames of 5 latent frames, pads them to 6 in front (patch_size_t 2), samples all 6
    and drops frame 0 before decoding. Same noise for all 6 frames, same generator for the SDE draws: same video."""
    num_steps, num_latent_frames = 4, 6
    config = sampling_config(tiny_15_models, tiny_15_models.config_path, num_steps)
    pipe = CogVideoXPipeline.from_pretrained(export(tmp_path, config, tiny_15_models.transformer))
    assert pipe.transformer.config.patch_size_t == 2 and pipe.vae.config.invert_scale_latents  # the 1.5 release's
    engine = build_engine(tiny_15_models, config)
    plan = SamplingPlan(num_latent_frames, 16, fps=16, samples_per_prompt=1, seed=3, output_dir="unused", image_size=(64, 96))
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed)  # (T, 3, H, W)

    replay = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, num_latent_frames, 16, 8, 12, generator=replay)  # (b, t, c, h, w) incl. the padding frame
    theirs = pipe_call(pipe, cond, num_latent_frames - 1, num_steps, noise, replay)  # num_frames 17
    assert ours.shape == theirs.shape == (17, 3, 64, 96)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01


@pytest.mark.slow
def test_exported_15_i2v_pipeline_samples_our_video(tmp_path, tiny_15_i2v_models):
    """CogVideoX1.5 I2V with the image latent diffusers feeds (z / 0.7: image_latent_sampling_scale 1 / 0.7, exported
    as invert_scale_latents: true): same image (96x64, short side 64: no resize), same image draw (first, from the
    prompt's generator), same noise (next), the image in latent frame 0 (the padding frame), ofs 2.0: same video.
    DDIM, as the 1.0 I2V test: diffusers draws the SDE noise from its generator after the image latent."""
    num_steps, num_latent_frames = 4, 6
    config = sampling_config(tiny_15_i2v_models, tiny_15_i2v_models.config_path, num_steps, "VideoDDIMSampler")
    config.image_latent_sampling_scale = 1 / 0.7
    pipe = CogVideoXImageToVideoPipeline.from_pretrained(export(tmp_path, config, tiny_15_i2v_models.transformer))
    assert pipe.vae.config.invert_scale_latents and pipe.transformer.config.ofs_embed_dim == 32
    engine = build_engine(tiny_15_i2v_models, config)
    path = write_sized_image(tmp_path / "image.png", 96, 64)
    pixels = image_condition_pixels(path, (64, 96), config)
    plan = SamplingPlan(num_latent_frames, 16, fps=16, samples_per_prompt=1, seed=3, output_dir="unused",
                        image2video=True, image_short_side=64)
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed, pixels)

    replay = torch.Generator().manual_seed(seed)
    torch.randn(1, 16, 1, 8, 12, generator=replay)  # the image latent's draw
    noise = torch.randn(1, num_latent_frames, 16, 8, 12, generator=replay)
    with Image.open(path) as image:
        theirs = pipe_call(pipe, cond, num_latent_frames - 1, num_steps, noise, torch.Generator().manual_seed(seed),
                           image=image.convert("RGB"))
    assert ours.shape == theirs.shape == (17, 3, 64, 96)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01


@pytest.mark.parametrize("config_path, scale, invert, noted", [
    ("configs/cogvideox_5b.yaml", None, False, False),
    ("configs/cogvideox_5b_i2v.yaml", None, False, False),  # 0.7 z: diffusers' default
    ("configs/cogvideox_5b_i2v.yaml", 1 / 0.7, True, False),
    ("configs/cogvideox_5b_i2v.yaml", 1.0, False, True),
    ("configs/cogvideox1.5_5b.yaml", None, True, False),  # the released 1.5 VAE config's value
    ("configs/cogvideox1.5_5b_i2v.yaml", None, True, True),  # the reference's z: diffusers feeds z / 0.7
    ("configs/cogvideox1.5_5b_i2v.yaml", 1 / 0.7, True, False),
    ("configs/cogvideox1.5_5b_i2v.yaml", 0.7, False, False),
])
def test_invert_scale_latents_follows_the_sampling_image_latent_scale(config_path, scale, invert, noted):
    model = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)["model"]
    if scale is not None:
        model["image_latent_sampling_scale"] = scale
    written, note = image_latent_scale.invert_scale_latents(model)
    assert written is invert and (note is not None) is noted
    if noted:
        assert "videos differ" in note and "model.image_latent_sampling_scale: " in note


@pytest.mark.parametrize("lora_config, fixture, num_frames", [
    ("configs/tiny/cogvideox_tiny_i2v_lora.yaml", "tiny_i2v_models", 13),  # diffusers' learned table: its length only
    ("configs/tiny/cogvideox1.5_tiny_i2v_lora.yaml", "tiny_15_i2v_models", 14),  # 1.5: even, ofs 2.0
])
def test_lora_run_merged_or_as_adapter_gives_the_lora_model(tmp_path, request, lora_config, fixture, num_frames):
    """A tiny 5B-I2V / 1.5-I2V LoRA run (every weight perturbed, so the learned position table too): the merged export
    and the base export + adapter compute what the LoRA model computes."""
    network = build_network(lora_config, seed=0)
    save_sat_checkpoint({SAT_PREFIX + k: v for k, v in network.state_dict().items()}, tmp_path / "run", 7)
    config = request.getfixturevalue(fixture).model_config(lora_config)
    merged = CogVideoXImageToVideoPipeline.from_pretrained(export(tmp_path / "merged", config, tmp_path / "run"))
    adapter_dir = export(tmp_path / "adapter", config, tmp_path / "run", "--lora", "adapter")
    adapter = CogVideoXImageToVideoPipeline.from_pretrained(adapter_dir)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, num_frames, 32, 8, 12, generator=generator)  # (b, t, noisy 16 + image 16, h, w)
    context, timestep = torch.randn(1, 226, 32, generator=generator), torch.tensor([500])
    rotary = merged._prepare_rotary_positional_embeddings(64, 96, num_frames, torch.device("cpu"))
    ofs = torch.tensor([2.0]) if merged.transformer.config.ofs_embed_dim is not None else None

    def run(pipe):
        return pipe.transformer(x, context, timestep, image_rotary_emb=rotary, ofs=ofs, return_dict=False)[0]

    with torch.no_grad():
        ours = network(x, timestep, context, ofs=ofs)
        without = run(adapter)
        adapter.load_lora_weights(f"{adapter_dir}/lora")
        for pipe in (merged, adapter):
            torch.testing.assert_close(run(pipe), ours, atol=1e-4, rtol=0)
    assert (without - ours).abs().max() > 1e-2  # the adapter is what makes the difference


def test_folder_layout_and_model_index(tmp_path, tiny_models):
    output = export(tmp_path, tiny_models.model_config(), tiny_models.transformer)
    index = json.loads(open(f"{output}/model_index.json").read())
    assert index == {
        "_class_name": "CogVideoXPipeline", "_diffusers_version": index["_diffusers_version"],
        "scheduler": ["diffusers", "CogVideoXDPMScheduler"], "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }
    scheduler = json.loads(open(f"{output}/scheduler/scheduler_config.json").read())
    assert scheduler["snr_shift_scale"] == 3.0 and scheduler["timestep_spacing"] == "trailing"
    assert scheduler["rescale_betas_zero_snr"] and scheduler["prediction_type"] == "v_prediction"
    vae = json.loads(open(f"{output}/vae/config.json").read())
    assert vae["scaling_factor"] == 1.15258426 and vae["block_out_channels"] == [32, 64, 64, 128]


def test_bad_input_is_one_error_line(tmp_path, tiny_models, capsys):
    config = tiny_models.model_config()
    config.first_stage_config.params.ckpt_path = str(tmp_path / "missing.pt")
    with pytest.raises(SystemExit) as exit_info:
        with export_diffusers_pipeline.input_errors_as_messages():
            export(tmp_path, config, tiny_models.transformer)
    assert exit_info.value.code == 2
    assert "VAE checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "pipeline").exists()


def test_a_checkpoint_of_another_family_is_one_line_naming_both(tmp_path, tiny_models, tiny_15_models, capsys):
    """A 1.5 run exported with a 1.0 (2B) config: named as sampling names it, before anything is converted."""
    from checkpoints.checkpoint_shapes import DIT_FAMILIES

    with pytest.raises(SystemExit) as exit_info:
        with export_diffusers_pipeline.input_errors_as_messages():
            export(tmp_path, tiny_models.model_config(), tiny_15_models.transformer)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {tiny_15_models.transformer}: a {DIT_FAMILIES[2]} checkpoint, but {tmp_path / 'model.yaml'} describes "
        f"a {DIT_FAMILIES[4]} DiT; give the config of the checkpoint's family")
    assert not (tmp_path / "pipeline").exists()
