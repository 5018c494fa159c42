"""Video-to-video's parts (frame selection, the kept steps, the schedule's tail, the encode chunks) and its bad input:
one `error:` line, exit status 2, before the model is built (run in-process)."""

import imageio
import numpy as np
import pytest
import torch

import sample_video
from sgm.modules.diffusionmodules.schedule_tail import first_kept_step, tail_sampler
from sgm.util import instantiate_from_config
from test_entry_inputs import error_of, sampling_argv
from vae_modules.chunking import encode_chunk_plan
from video_to_video import frame_indices


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)


def test_frames_are_taken_at_the_output_frame_rate():
    assert frame_indices(104, 16.0, 8, 5) == [0, 2, 4, 6, 8]
    assert frame_indices(9, 8.0, 8, 9) == list(range(9))
    assert frame_indices(100, 29.97, 8, 3) == [0, 3, 7]
    assert frame_indices(8, 8.0, 8, 9) is None  # one frame short
    assert frame_indices(5, 4.0, 8, 9) == [0, 0, 1, 1, 2, 2, 3, 3, 4]  # a slower source repeats frames


def test_kept_steps_are_diffusers_get_timesteps():
    """n - min(int(n S), n), as diffusers' get_timesteps (int() of the float product: 10 x 0.7 = 7.000000000000001)."""
    assert [first_kept_step(50, s) for s in (0.8, 1.0, 0.02, 0.999)] == [10, 0, 49, 1]
    assert [first_kept_step(10, s) for s in (0.7, 0.3, 0.1)] == [3, 7, 9]
    for strength in (0.0, -0.5, 1.01, 0.05):
        with pytest.raises(ValueError, match="expected 0 < strength <= 1"):
            first_kept_step(10, strength)


def test_tail_sampler_runs_the_last_steps_of_the_schedule_with_a_guider_for_them(tiny_models):
    sampler = instantiate_from_config(tiny_models.model_config().sampler_config)  # SDE DPM++, 10 steps, DynamicCFG
    alphas, timesteps = sampler.schedule(torch.device("cpu"))
    tail = tail_sampler(sampler, 3)
    tail_alphas, tail_timesteps = tail.schedule(torch.device("cpu"))
    assert tail.num_steps == 7 and tail_timesteps == timesteps[3:]
    assert torch.equal(tail_alphas, alphas[3:]) and tail_alphas[-1] == 1
    assert tail.guider.num_steps == 7 and sampler.guider.num_steps == 10 and sampler.num_steps == 10
    # diffusers' V2V dynamic CFG: 1 + s (1 - cos(pi ((m - t) / m) ** 5)) / 2 with its reduced count m
    t = tail_timesteps[0]
    assert tail.guider.scale_at(t, 0, 7) == pytest.approx(1 + 6 * (1 - np.cos(np.pi * ((7 - t) / 7) ** 5)) / 2)
    full = tail_sampler(sampler, 0)
    assert full.guider.num_steps == 10 and torch.equal(full.schedule(torch.device("cpu"))[0], alphas)


def test_encode_chunks_are_diffusers_frame_batches():
    assert encode_chunk_plan(9) == [(0, 9)] and encode_chunk_plan(13) == [(0, 13)]
    assert encode_chunk_plan(17) == [(0, 9), (9, 17)] and encode_chunk_plan(21) == [(0, 13), (13, 21)]
    assert encode_chunk_plan(81) == [(0, 9)] + [(s, s + 8) for s in range(9, 81, 8)]


def write_video(path, frames: int, fps: int = 8) -> str:
    with imageio.get_writer(path, fps=fps, macro_block_size=16) as writer:
        for k in range(frames):
            writer.append_data(np.full((64, 96, 3), 20 * k, dtype=np.uint8))
    return str(path)


def v2v_error(models, tmp_path, capsys, monkeypatch, line: str, *extra: str) -> str:
    (tmp_path / "prompts.txt").write_text(line + "\n")
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    return error_of(sample_video, sampling_argv(models, tmp_path, *extra), capsys)


STEPS_RULE = "expected 0 < strength <= 1 keeping at least one of the sampler's 10 steps (int(10 x strength) >= 1, i.e. strength >= 0.1)"


@pytest.mark.parametrize("strength", ["0", "1.5", "-0.2", "0.05"])
def test_strength_outside_the_range_is_refused(tiny_models, tmp_path, capsys, monkeypatch, strength):
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, f"a sun@@{tmp_path}/unread.mp4", "--video2video",
                     "--strength", strength)
    assert line == f"error: --strength {float(strength)}: {STEPS_RULE}"


def test_strength_without_video2video_is_refused(tiny_models, tmp_path, capsys, monkeypatch):
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, "a sun", "--strength", "0.5")
    assert line == "error: --strength 0.5 is for video-to-video: add --video2video (prompt lines '<prompt text>@@<video path>')"


def test_bad_videos_are_refused(tiny_models, tmp_path, capsys, monkeypatch):
    """Missing, not a video, too short (5 frames; 3 latent frames need 9 at 8 fps); the prompt file is rewritten."""
    missing = tmp_path / "missing.mp4"
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, f"a sun@@{missing}", "--video2video")
    assert line == f"error: video {str(missing)!r} (from a video-to-video prompt line) does not exist"
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, f"a sun@@{text}", "--video2video")
    assert line.startswith(f"error: video {str(text)!r} cannot be read as a video: cannot open video {text}")
    short = write_video(tmp_path / "short.mp4", 5)
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, f"a sun@@{short}", "--video2video")
    assert line == (f"error: video {short!r} is too short: 5 frames at 8 fps (0.62 s); video-to-video needs 9 frames "
                    "at the output's 8 fps (1.00 s of video; fewer --sampling-num-frames need less)")


def test_a_line_without_a_video_is_refused(tiny_models, tmp_path, capsys, monkeypatch):
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, "a sun over a gradient", "--video2video")
    assert line == "error: video-to-video prompt line 'a sun over a gradient' is not of the form '<prompt text>@@<video path>'"


def test_image_to_video_models_and_lines_are_refused(tiny_models, tiny_i2v_models, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", 9)
    line = v2v_error(tiny_models, tmp_path, capsys, monkeypatch, f"a sun@@{video}", "--video2video", "--image2video")
    assert line == ("error: --video2video and --image2video exclude each other: a prompt line holds one video or one "
                    "image; pick one")
    (tmp_path / "i2v").mkdir()
    line = v2v_error(tiny_i2v_models, tmp_path / "i2v", capsys, monkeypatch, f"a sun@@{video}", "--video2video")
    assert line == ("error: --video2video needs a text-to-video model (2B, 5B, 1.5-5B): this network's in_channels=32 "
                    "is 2 x latent_channels=16, an image-to-video model's")
