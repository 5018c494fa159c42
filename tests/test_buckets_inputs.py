"""Bad bucket input to train_video.py: one `error:` line each, exit status 2, before any model is built (issue 21,
item 8). In-process; the model build and SAT's loop fail the test if reached."""

import pytest
from omegaconf import OmegaConf

import train_video
from tiny.videos import distinct_waves, write_clip
from buckets.model_fit import check_buckets_fit
from buckets.spec import Bucket, read_buckets
from test_entry_inputs import error_of, one_process  # noqa: F401  (the fixture: one process)

T2V_15, SFT_BUCKETS = "configs/tiny/cogvideox1.5_tiny_lora.yaml", "configs/tiny/sft_tiny_1.5_buckets.yaml"
T2V_10 = "configs/tiny/cogvideox_tiny_lora.yaml"
KEY = "data.params.buckets"
CASES = {
    "frames not 4k+1": (T2V_15, {"buckets": [[8, 64, 96]]},
                        f"{KEY}[0]=[8, 64, 96]: frames must be 4k + 1 (the VAE encodes 4k + 1 frames), e.g. 49 or 81"),
    "size not a multiple of 16": (T2V_15, {"buckets": [[9, 64, 90]]},
                                  f"{KEY}[0]=[9, 64, 90]: height and width must be multiples of 16"),
    "size outside the table": (T2V_15, {"buckets": [[9, 144, 96]]},
                               f"{KEY}[0]=[9, 144, 96] gives a 144x96 video; this model samples heights and widths that "
                               "are multiples of 16 up to 128x192"),
    "frames outside the table": (T2V_15, {"buckets": [[169, 64, 96]]}, f"{KEY}[0] frames=169 cannot be trained"),
    "empty list": (T2V_15, {"buckets": []}, f"{KEY}=[]: expected a non-empty list of [frames, height, width]"),
    "listed twice": (T2V_15, {"buckets": [[9, 64, 96], [5, 64, 96], [9, 64, 96]]},
                     f"{KEY}[2]=[9, 64, 96] is listed twice (also {KEY}[0])"),
    "with video_size": (T2V_15, {"video_size": [64, 96]},
                        f"{KEY} is given together with data.params.video_size; with buckets each item's size"),
    "with both": (T2V_15, {"video_size": [64, 96], "max_num_frames": 9},
                  f"{KEY} is given together with data.params.video_size and data.params.max_num_frames"),
    "1.0 model, another size": (T2V_10, {},
                                f"{KEY}[1]=[9, 96, 64]: a CogVideoX 1.0 (2B, 5B, 5B-I2V) model's position table fixes "
                                "the size to 64x96"),
    "strict_eval": (T2V_15, {}, "strict_eval: true reads the validation set in listing order, which mixes buckets",
                    {"strict_eval": True}),
    "split": (T2V_15, {}, "split 8,1,1: SAT's train/valid split is not supported with data.params.buckets",
              {"split": "8,1,1"}),
    "no video fits": (T2V_15, {}, "no video in {data} fits a bucket: found 64x48 px 8 frames at 8 fps (1.0 s) x2; "
                                  "the buckets [[9, 64, 96], [9, 96, 64], [9, 80, 80], [5, 64, 96], [5, 96, 64], "
                                  "[5, 80, 80]] ([frames, height, width]) need clips lasting more than their frames at "
                                  "4 fps (after 3.0 skipped at the start)"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_buckets_one_error_before_the_build(case, tmp_path, capsys, monkeypatch):
    model, params, expected, *args = CASES[case]
    data = tmp_path / "data"
    for index in range(2):  # 1 s clips: too short for any bucket at 4 fps, fine for the other cases' checks
        write_clip(data, f"short{index}", f"short{index} waves drifting", 48, 64, 1.0, **distinct_waves(index))
    override = tmp_path / "override.yaml"
    run_args = {"train_data": [str(data)], "valid_data": None, **(args[0] if args else {})}
    OmegaConf.save(OmegaConf.create({"args": run_args, "data": {"params": params}}), override)
    if case == "empty list":  # a merge cannot empty a list: the whole data section is given
        base = OmegaConf.load(SFT_BUCKETS)
        base.data.params.buckets = []
        OmegaConf.save(base, tmp_path / "sft.yaml")
        argv = ["--base", model, str(tmp_path / "sft.yaml"), str(override)]
    else:
        argv = ["--base", model, SFT_BUCKETS, str(override)]
    monkeypatch.setattr(train_video, "build_engine", lambda *a, **k: pytest.fail("the model was built"))
    monkeypatch.setattr(train_video, "training_main", lambda *a, **k: pytest.fail("training started"))
    line = error_of(train_video, argv, capsys)
    assert expected.format(data=data) in line, line


def test_models_accept_buckets_within_their_tables():
    one_zero = OmegaConf.load(T2V_10).model
    check_buckets_fit(one_zero, [Bucket(9, 64, 96), Bucket(5, 64, 96)], 1, ["sft.yaml"])  # 1.0: shorter lengths
    one_five = OmegaConf.load(T2V_15).model
    check_buckets_fit(one_five, [Bucket(165, 128, 192), Bucket(5, 16, 16), Bucket(9, 128, 64)], 1, ["sft.yaml"])
    shipped = read_buckets(OmegaConf.load("configs/sft_1.5_buckets.yaml").data.params)  # the released 1.5 table
    check_buckets_fit(OmegaConf.load("configs/cogvideox1.5_5b_i2v_lora.yaml").model, shipped, 1, ["sft.yaml"])
