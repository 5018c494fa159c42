"""Which latent frames the reference's sampling decodes together (its `sample_video.py` decode loop)."""

from model_family import pixel_frame_count


def reference_chunk_plan(num_latent_frames: int) -> list[tuple[int, int]]:
    """The reference sampling's chunks: [0:3], [3:5], [5:7], ... up to ``num_latent_frames``.

    An even count is refused: the reference's loop runs ``(T - 1) // 2`` times and silently never
    decodes the last latent frame (its allowed sampling lengths are 13, 11, 9). A single latent
    frame decodes as [0:1] (the reference's loop would decode nothing; diffusers does [0:1]).
    """
    if num_latent_frames < 1:
        raise ValueError(f"need at least one latent frame, got {num_latent_frames}")
    if num_latent_frames % 2 == 0:
        raise ValueError(
            f"the reference chunk plan needs an odd latent frame count, got {num_latent_frames} "
            f"(the reference never decodes the last frame of an even count); use "
            f"{num_latent_frames - 1} or {num_latent_frames + 1} latent frames "
            f"({pixel_frame_count(num_latent_frames - 1)} or {pixel_frame_count(num_latent_frames + 1)} video frames), "
            f"or pass an explicit chunk_plan"
        )
    if num_latent_frames == 1:
        return [(0, 1)]
    return [(0, 3)] + [(start, start + 2) for start in range(3, num_latent_frames, 2)]


def check_chunk_plan(plan: list[tuple[int, int]], num_latent_frames: int) -> None:
    """Raise ValueError unless ``plan`` is consecutive non-empty [start, end) ranges covering all frames."""
    position = 0
    for start, end in plan:
        if start != position or end <= start:
            raise ValueError(
                f"chunk plan {plan} is not a sequence of consecutive non-empty ranges from 0 "
                f"(chunk ({start}, {end}) where a chunk starting at {position} was expected)"
            )
        position = end
    if position != num_latent_frames:
        raise ValueError(f"chunk plan {plan} covers {position} latent frames, the latent has {num_latent_frames}")


ENCODE_CHUNK_FRAMES = 8  # diffusers' AutoencoderKLCogVideoX.num_sample_frames_batch_size


def encode_chunk_plan(num_frames: int, frames_per_chunk: int = ENCODE_CHUNK_FRAMES) -> list[tuple[int, int]]:
    """The video-frame chunks diffusers' CogVideoX VAE encodes in turn (`AutoencoderKLCogVideoX._encode`):
    max(F // 8, 1) chunks of 8 frames, the first one F % 8 frames longer: 17 -> [0:9], [9:17]; 49 -> [0:9], [9:17],
    ..., [41:49]; 13 -> [0:13]. For 4k + 1 frames the first chunk is odd (the first-frame rule) and the others even,
    so the chunks' latents add up to the one-shot encode's count."""
    chunks = max(num_frames // frames_per_chunk, 1)
    first = frames_per_chunk + num_frames % frames_per_chunk if chunks > 1 else num_frames
    return [(0, first)] + [(start, start + frames_per_chunk) for start in range(first, num_frames, frames_per_chunk)]
