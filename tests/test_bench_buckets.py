"""benchmarks/bench_buckets.py: the pixels-kept table's rows are the assignment's, and the scaled buckets keep their
ratio classes and the 16-pixel rule."""

from benchmarks.bench_buckets import FOLDER, buckets_of, pixels_kept, scaled
from buckets.spec import Bucket


def test_pixels_kept_table(capsys):
    pixels_kept()
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 + len(FOLDER) + 1
    assert rows[2] == "| phone portrait 1080x1920 | 4 | 81x1360x768 | 99.6% | 31.8% |"  # 768/2417 of it at one size
    assert rows[-1] == "| **folder** | 16 | | **99.8%** | **62.8%** |"


def test_scaled_buckets():
    buckets = [scaled(b) for b in buckets_of("configs/sft_1.5_buckets.yaml")]
    assert buckets[:2] == [Bucket(81, 96, 176), Bucket(81, 176, 96)]
    assert all(b.height % 16 == 0 and b.width % 16 == 0 for b in buckets)
