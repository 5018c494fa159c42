"""Frame selection of the fine-tuning dataset: hand-computed indices and the reference's math."""

import numpy as np
import pytest

from data_video import FrameSelection, select_frames
from model_family import largest_4k_plus_1


def reference_indices(video_frames, video_fps, fps, max_num_frames, skip):
    """The reference SFTDataset's index math re-stated on index arrays (None where it raises).

    Follows THUDM/CogVideo sat/data_video.py: decode range(start, end_safety) (or the
    4k+1 run), index it with the sampled indices, then pad_last_frame to max_num_frames.
    """
    start = int(skip)
    if video_frames / video_fps * fps > max_num_frames:
        num = max_num_frames
        end = int(start + num / fps * video_fps)
        end_safety = min(end, video_frames)
        step = (end - start) // num
        if step == 0:
            return None  # np.arange raises ZeroDivisionError
        decoded = np.arange(start, end_safety)
        picked = np.arange(start, end, step) - start
        if picked.max() >= len(decoded):
            return None  # tensor indexing raises IndexError
        frames = decoded[picked]
    elif video_frames > max_num_frames:
        num = max_num_frames
        end = int(video_frames - skip)
        frames = np.arange(start, end, max((end - start) // num, 1))
    else:
        end = int(video_frames - skip)
        n = end - start
        num = n - 3 if n % 4 == 0 else n - n % 4 + 1
        if num < 1:
            return None  # empty decode
        frames = np.arange(start, start + num)
    if len(frames) == 0:
        return None
    padded = list(frames[:max_num_frames]) + [frames[-1]] * (max_num_frames - len(frames))
    return [int(i) for i in padded], num


@pytest.mark.parametrize(
    "n, expected", [(1, 1), (2, 1), (4, 1), (5, 5), (8, 5), (9, 9), (43, 41), (44, 41)]
)
def test_largest_4k_plus_1(n, expected):
    assert largest_4k_plus_1(n) == expected


def test_long_clip_30fps_floors_the_step():
    # 300 frames at 30 fps -> 80 frames at 8 fps > 49: end = int(3 + 49 / 8 * 30) = 186,
    # step = 183 // 49 = 3, so frames 3, 6, ..., 147 (10 fps effective).
    selection = select_frames(300, 30.0, 8, 49, 3.0)
    assert selection == FrameSelection(indices=tuple(range(3, 150, 3)), num_frames=49)


def test_long_clip_24fps_exact_spacing():
    # 40 frames at 24 fps -> 13.3 frames at 8 fps > 9: end = int(3 + 9 / 8 * 24) = 30, step 3.
    selection = select_frames(40, 24.0, 8, 9, 3.0)
    assert selection.indices == (3, 6, 9, 12, 15, 18, 21, 24, 27)
    assert selection.num_frames == 9


def test_ntsc_rate():
    # 29.97 fps: end = int(3 + 6.125 * 29.97) = int(186.566) = 186, step 3.
    assert select_frames(300, 29.97, 8, 49, 3.0).indices == tuple(range(3, 150, 3))


def test_many_frames_but_short_at_target_fps_takes_consecutive_frames():
    # 100 frames at 30 fps -> 26.7 frames at 8 fps <= 49, but 100 > 49:
    # end = 97, step = max(94 // 49, 1) = 1 -> frames 3..51.
    selection = select_frames(100, 30.0, 8, 49, 3.0)
    assert selection == FrameSelection(indices=tuple(range(3, 52)), num_frames=49)


def test_many_frames_step_two():
    # 25 frames at 24 fps (8.3 at 8 fps <= 9), 25 > 9: end = 22, step = 19 // 9 = 2.
    assert select_frames(25, 24.0, 8, 9, 3.0).indices == (3, 5, 7, 9, 11, 13, 15, 17, 19)


def test_pad_case_repeats_last_frame():
    # 12 frames at 24 fps, 12 > 9: end = 9, step 1 -> frames 3..8 (6), padded with frame 8.
    selection = select_frames(12, 24.0, 8, 9, 3.0)
    assert selection == FrameSelection(indices=(3, 4, 5, 6, 7, 8, 8, 8, 8), num_frames=9)


def test_short_clip_takes_4k_plus_1_and_pads_to_max():
    # 40 frames <= 49: usable 3..36 (34 frames) -> 33 = 4*8+1 frames 3..35, padded with 35.
    selection = select_frames(40, 30.0, 8, 49, 3.0)
    assert selection.num_frames == 33
    assert selection.indices == tuple(range(3, 36)) + (35,) * 16


def test_clip_without_frames_after_skipping_is_none():
    assert select_frames(6, 24.0, 8, 49, 3.0) is None
    assert select_frames(7, 24.0, 8, 49, 3.0) == FrameSelection(indices=(3,) * 49, num_frames=1)


def test_reference_crash_cases_are_handled():
    # 50 frames at 8 fps: the reference indexes frame 50 of a 50-frame video (IndexError);
    # we keep frames 3..49 and pad with 49.
    assert select_frames(50, 8.0, 8, 49, 3.0).indices == tuple(range(3, 50)) + (49, 49)
    # 40 frames at 5 fps: step 30 // 49 = 0 in the reference (ZeroDivisionError); we use 1.
    assert select_frames(40, 5.0, 8, 49, 3.0).indices == tuple(range(3, 33)) + (32,) * 19


@pytest.mark.parametrize("max_num_frames", [9, 13, 49])
@pytest.mark.parametrize("video_fps", [8.0, 24.0, 25.0, 29.97, 30.0, 60.0])
def test_matches_reference_math_wherever_it_runs(max_num_frames, video_fps):
    checked = 0
    for video_frames in range(1, 400):
        expected = reference_indices(video_frames, video_fps, 8, max_num_frames, 3.0)
        selection = select_frames(video_frames, video_fps, 8, max_num_frames, 3.0)
        if expected is None:
            continue
        assert (list(selection.indices), selection.num_frames) == expected, video_frames
        checked += 1
    assert checked > 300
