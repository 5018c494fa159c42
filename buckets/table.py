"""The listing's one table: per bucket, how many videos it holds and how much of their picture the crop keeps."""

from typing import Sequence

import torch

from buckets.assignment import ClipHeader
from buckets.spec import Bucket


def bucket_table(folder: str, fps: int, buckets: Sequence[Bucket], assigned: Sequence[tuple[Bucket, float]]) -> str:
    """`assigned`: (bucket, kept share) per listed video. The share is the mean over the bucket's videos."""
    lines = [f"{folder}: {len(assigned)} videos in buckets (frames x height x width at {fps} fps)",
             f"  {'bucket':<16}{'videos':>8}{'picture kept':>14}"]
    for bucket in buckets:
        shares = [kept for chosen, kept in assigned if chosen == bucket]
        kept = f"{100 * sum(shares) / len(shares):.1f}%" if shares else "-"
        lines.append(f"  {str(bucket):<16}{len(shares):>8}{kept:>14}")
    return "\n".join(lines)


def print_on_first_rank(text: str) -> None:
    """Every rank lists its datasets; the first one prints."""
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(text, flush=True)


def describe_clips(clips: Sequence[ClipHeader], limit: int = 8) -> str:
    """`96x64 px 16 frames at 8 fps (2.0 s) x2, ...`: the sizes and lengths found, for messages."""
    counts: dict[str, int] = {}
    for clip in clips:
        key = f"{clip.width}x{clip.height} px {clip.num_frames} frames at {clip.fps:.4g} fps ({clip.num_frames / clip.fps:.1f} s)"
        counts[key] = counts.get(key, 0) + 1
    found = [f"{key} x{count}" if count > 1 else key for key, count in sorted(counts.items())]
    more = f", and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more
