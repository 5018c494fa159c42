"""Prompt reading, output naming, seeding and mp4 writing of video_sampling.py."""

import os

import decord
import pytest
import torch

from input_errors import InputError
from video_sampling import Prompt, prompt_folder, read_prompts, sample_seed, save_video_mp4


def test_read_prompts_skips_blank_lines_and_splits_across_ranks(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\n\n  a dog  \na bird\na fish\n")
    assert read_prompts(str(path)) == [Prompt(0, "a cat"), Prompt(1, "a dog"), Prompt(2, "a bird"), Prompt(3, "a fish")]
    rank0, rank1 = read_prompts(str(path), 0, 2), read_prompts(str(path), 1, 2)
    assert [p.index for p in rank0] == [0, 2] and [p.index for p in rank1] == [1, 3]


def test_missing_and_empty_prompt_files_name_the_path(tmp_path):
    with pytest.raises(InputError, match="nothere.txt"):
        read_prompts(str(tmp_path / "nothere.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n")
    with pytest.raises(InputError, match="empty.txt"):
        read_prompts(str(empty))


def test_prompt_folder_matches_reference_naming():
    prompt = Prompt(3, "a cat / on a mat " + "x" * 200)
    folder = prompt_folder("out", prompt, 1)
    slug = "a_cat__on_a_mat_" + "x" * (120 - len("a_cat__on_a_mat_"))
    assert folder == f"out/3_{slug}/1"


def test_sample_seed_depends_on_seed_prompt_and_sample():
    prompt = Prompt(0, "a cat")
    seeds = {sample_seed(s, p, n) for s in (1, 2) for p in (prompt, Prompt(1, "a cat")) for n in (0, 1)}
    assert len(seeds) == 8
    assert sample_seed(1, prompt, 0) == sample_seed(1, Prompt(0, "a cat"), 0)
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_save_video_mp4_writes_frames_decord_reads_back(tmp_path):
    video = torch.rand(9, 3, 32, 64)
    path = tmp_path / "sub" / "000000.mp4"
    save_video_mp4(video, str(path), fps=8)
    reader = decord.VideoReader(str(path))
    assert len(reader) == 9 and reader[0].shape == (32, 64, 3) and round(reader.get_avg_fps()) == 8


def test_prompt_folder_cuts_non_ascii_prompts_by_bytes(tmp_path):
    """160 CJK characters are 480 UTF-8 bytes: cut at 120 bytes on a character boundary, a name the file system takes."""
    prompt = Prompt(0, "\u732b" * 159 + "\u00e9")
    folder = prompt_folder(str(tmp_path), prompt, 0)
    name = os.path.basename(os.path.dirname(folder))
    assert name == "0_" + "\u732b" * 40
    mixed = os.path.basename(os.path.dirname(prompt_folder(str(tmp_path), Prompt(7, "abc" + "\u00e9" * 100), 0)))
    assert mixed == "7_abc" + "\u00e9" * 58 and len(mixed.encode()) == 2 + 119  # the 2-byte character at byte 119 dropped
    os.makedirs(folder)
