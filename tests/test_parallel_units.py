"""The parallel layout, its checks, and the Ulysses all-to-alls on two gloo processes (uneven slices)."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

import sample_video
from input_errors import InputError
from parallel.layout import ParallelLayout, check_layout
from parallel.sampling import check_decode_split
from parallel.threads import DEFAULT_THREADS, cpu_threads, threads_per_process
from parallel.ulysses import gather_sequence, heads_to_seq, seq_to_heads, split_sizes
from parallel_worker import free_port
from test_entry_inputs import error_of, sampling_argv


def test_layout_coordinates_data_cfg_sequence():
    layout = ParallelLayout(world_size=8, rank=5, cfg=2, sequence=2)  # 5 = (1 * 2 + 0) * 2 + 1
    assert (layout.data, layout.data_rank, layout.cfg_rank, layout.sequence_rank) == (2, 1, 0, 1)
    assert layout.cfg_peers() == [5, 7]
    assert layout.sequence_peers() == [4, 5]
    assert layout.video_peers() == [4, 5, 6, 7]
    assert not layout.writes_output and ParallelLayout(8, 4, 2, 2).writes_output
    assert [ParallelLayout(4, r).data_rank for r in range(4)] == [0, 1, 2, 3]  # plain data parallel as before


@pytest.mark.parametrize(
    "world, cfg, sequence, heads, guided, message",
    [
        (3, 2, 1, 2, True, "--cfg-parallel 2 x --sequence-parallel 1 = 2 processes per video does not divide the 3 processes"),
        (4, 1, 4, 2, True, "--sequence-parallel 4 does not divide the model's 2 attention heads"),
        (2, 3, 1, 2, True, "--cfg-parallel must be 1 or 2"),
        (2, 2, 1, 2, False, "--cfg-parallel 2 needs classifier-free guidance"),
        (2, 1, 0, 2, True, "--sequence-parallel must be a positive integer, got 0"),
    ],
)
def test_bad_degrees_are_one_message(world, cfg, sequence, heads, guided, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_layout(world, cfg, sequence, heads, guided)


def test_sample_video_refuses_a_degree_that_does_not_divide_the_processes(tiny_models, tmp_path, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path, "--cfg-parallel", "2"), capsys)
    assert line.startswith("error: --cfg-parallel 2 x --sequence-parallel 1 = 2 processes per video does not divide the 1 processes")


def test_split_sizes_cover_the_sequence():
    assert split_sizes(7, 2) == [4, 3] and split_sizes(8, 4) == [2, 2, 2, 2] and sum(split_sizes(17776, 3)) == 17776


def _all_to_all_worker(rank: int, port: int, out: dict):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        full = torch.arange(2 * 4 * 7 * 3, dtype=torch.float32).view(2, 4, 7, 3)  # (b, heads, n, head)
        sizes = split_sizes(7, 2)
        start = sum(sizes[:rank])
        local = full[:, :, start : start + sizes[rank]]
        heads = seq_to_heads(local, sizes, dist.group.WORLD)  # (b, 2, 7, 3): this rank's heads, every token
        assert torch.equal(heads, full[:, 2 * rank : 2 * rank + 2])
        assert torch.equal(heads_to_seq(heads, sizes, rank, dist.group.WORLD), local)
        tokens = full.permute(0, 2, 1, 3).flatten(2)  # (b, n, d)
        assert torch.equal(gather_sequence(tokens[:, start : start + sizes[rank]], sizes, dist.group.WORLD), tokens)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawned processes import torch, SAT and DeepSpeed again (about 45 s on 2 cores)
def test_ulysses_all_to_all_round_trip_with_uneven_slices():
    mp.start_processes(_all_to_all_worker, args=(free_port(), {}), nprocs=2, join=True, start_method="spawn")


def test_sample_video_refuses_cp_size_without_enough_processes(tiny_models, tmp_path, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    config = tiny_models.model_config()
    config.first_stage_config.params.cp_size = 2
    model_yaml = tmp_path / "model.yaml"
    OmegaConf.save(OmegaConf.create({"model": config}), model_yaml)
    line = error_of(sample_video, sampling_argv(tiny_models, tmp_path), capsys)
    assert line == ("error: first_stage_config cp_size 2 does not divide the 1 process of sample_video.py (the VAE's "
                    "context parallelism splits each video over a group of 2 processes): run a multiple of 2 "
                    "processes, e.g. torchrun --nproc_per_node=2 sample_video.py ...")


def test_decode_split_needs_the_video_ranks_and_a_splittable_latent(tiny_models):
    config = tiny_models.model_config()
    config.first_stage_config.params.cp_size = 2
    with pytest.raises(InputError, match="--cfg-parallel x --sequence-parallel = 1 is not a multiple of 2"):
        check_decode_split(config, 2, 1, 13)
    with pytest.raises(InputError, match="a latent of 11 frames cannot be split over 2 ranks"):
        check_decode_split(config, 2, 2, 11)
    check_decode_split(config, 4, 2, 13)


@pytest.mark.parametrize("flags, message", [
    (["--sequence-parallel", "2"], "--sequence-parallel 2: a sampling option (sample_video.py); training splits data only"),
    (["--video2video"], "--video2video is a sampling option (sample_video.py): validation videos during training"),
    (["--strength", "0.5"], "--strength is a sampling option (sample_video.py)"),
])
def test_train_video_refuses_sampling_only_flags(tmp_path, capsys, monkeypatch, flags, message):
    import train_video

    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    argv = ["--base", "configs/tiny/cogvideox_tiny_lora.yaml", "configs/tiny/sft_tiny.yaml", *flags]
    line = error_of(train_video, argv, capsys)
    assert line.startswith(f"error: {message}")


def test_threads_per_process_default_and_bad_values():
    """One default whatever the layout (torchrun's 1); a value that is not a thread count is one line."""
    assert threads_per_process({}) == DEFAULT_THREADS == 1 and threads_per_process({"OMP_NUM_THREADS": "3"}) == 3
    for bad in ("0", "two", ""):
        with pytest.raises(InputError, match=f"OMP_NUM_THREADS={bad!r}: expected a number of threads per process >= 1"):
            threads_per_process({"OMP_NUM_THREADS": bad})
    before = torch.get_num_threads()
    with cpu_threads():
        assert torch.get_num_threads() == threads_per_process()
    assert torch.get_num_threads() == before
