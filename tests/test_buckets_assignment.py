"""The bucket assignment on its own (a pure function of the clip header, the target fps and the buckets), the
listing's table, and the bucketed order of items (every micro-batch one bucket, every epoch every item)."""

from collections import Counter

import pytest

from buckets.assignment import ClipHeader, assign_bucket
from buckets.batches import BucketBatches
from buckets.spec import Bucket, read_buckets
from buckets.table import bucket_table
from data_video import select_frames

SHIPPED = [Bucket(*b) for b in ([81, 768, 1360], [81, 1360, 768], [81, 768, 1024], [81, 1024, 768], [81, 768, 768],
                                [49, 768, 1360], [49, 1360, 768], [49, 768, 1024], [49, 1024, 768], [49, 768, 768])]


def assign(frames: int, fps: float, height: int, width: int, buckets=SHIPPED, target: int = 16):
    return assign_bucket(ClipHeader(frames, fps, height, width), target, buckets, 3.0, select_frames)


@pytest.mark.parametrize("height, width, seconds, bucket", [
    (1080, 1920, 6, (81, 768, 1360)),   # landscape 16:9, long: the longest length
    (1920, 1080, 6, (81, 1360, 768)),   # portrait phone clip
    (1080, 1080, 6, (81, 768, 768)),    # square
    (480, 640, 6, (81, 768, 1024)),     # 4:3 landscape
    (1920, 1080, 4, (49, 1360, 768)),   # a 4 s portrait clip fills 49 frames at 16 fps, not 81
    (1000, 1333, 4, (49, 768, 1024)),   # odd size, nearest ratio 4:3
    (721, 1283, 10, (81, 768, 1360)),   # odd size near 16:9, long
])
def test_nearest_ratio_then_longest_length(height, width, seconds, bucket):
    chosen = assign(30 * seconds, 30.0, height, width)
    assert chosen.bucket == bucket and chosen.speed == 1.0
    assert len(chosen.indices) == len(set(chosen.indices)) == bucket[0]  # no frame repeated


def test_one_bucket_selects_the_one_size_frames():
    # the frames of a clip that fills the bucket are those of the one-size path (data_video.select_frames)
    for frames, fps in ((180, 30.0), (90, 16.0), (500, 24.0)):
        chosen = assign(frames, fps, 768, 1360, buckets=[Bucket(81, 768, 1360)])
        assert chosen.indices == select_frames(frames, fps, 16, 81, 3.0).indices


def test_kept_share_is_the_center_crop():
    assert assign(180, 30.0, 768, 1360).kept == 1.0
    # 1080x1920 portrait into 1360x768: resized to 1365x768 (the one-size path's floor), 1360 rows kept
    assert assign(180, 30.0, 1920, 1080).kept == pytest.approx(1360 / 1365)
    # the same clip cropped to one landscape size keeps about a third of its picture
    one = assign(180, 30.0, 1920, 1080, buckets=[Bucket(81, 768, 1360)])
    assert one.kept == pytest.approx(768 / 2417, rel=1e-3)


def test_short_clip_fits_no_bucket():
    assert assign(45, 30.0, 1080, 1920) is None  # 1.5 s: 24 frames at 16 fps, shortest bucket 49
    # just long enough at 16 fps for 49 frames once the 3 skipped frames are counted
    assert assign(95, 30.0, 1080, 1920).bucket.frames == 49


def test_low_fps_takes_frames_at_the_clip_rate():
    # an 8 fps clip of 100 frames under a 16 fps config: consecutive frames (none repeated or held), at half speed
    chosen = assign(100, 8.0, 1080, 1920)
    assert chosen.bucket == (81, 768, 1360) and chosen.speed == 0.5
    assert chosen.indices == tuple(range(3, 84))
    assert assign(60, 8.0, 1080, 1920).bucket == (49, 768, 1360)  # 57 frames after the skipped start fill 49
    assert assign(40, 8.0, 1080, 1920) is None  # 37 frames after the skipped start: no length filled


def test_ties_go_to_the_bucket_listed_first():
    buckets = [Bucket(9, 64, 96), Bucket(9, 96, 64)]
    assert assign(100, 16.0, 80, 80, buckets=buckets).bucket == buckets[0]
    assert assign(100, 16.0, 80, 80, buckets=buckets[::-1]).bucket == buckets[1]


def test_table_counts_and_kept_shares():
    buckets = [Bucket(9, 64, 96), Bucket(5, 64, 96)]
    table = bucket_table("data", 4, buckets, [(buckets[0], 1.0), (buckets[0], 0.5)])
    assert table.splitlines()[2:] == ["  9x64x96                2         75.0%", "  5x64x96                0             -"]


def test_read_buckets():
    assert read_buckets({"fps": 16}) is None
    assert read_buckets({"buckets": [[81, 768, 1360], [49, 768, 768]]}) == (Bucket(81, 768, 1360), Bucket(49, 768, 768))


@pytest.mark.parametrize("micro_batch", [1, 2, 3])
def test_every_micro_batch_one_bucket_every_item_each_epoch(micro_batch):
    item_buckets = ["a"] * 5 + ["b"] * 2 + ["c"] * 4
    order = BucketBatches(list(range(11)), item_buckets, micro_batch, seed=7, epochs=3)
    per_epoch = order.batches_per_epoch * micro_batch
    assert len(order) == 3 * per_epoch
    epochs = [[order[p] for p in range(e * per_epoch, (e + 1) * per_epoch)] for e in range(3)]
    for items in epochs:
        batches = [items[k:k + micro_batch] for k in range(0, len(items), micro_batch)]
        assert all(len({item_buckets[i] for i in batch}) == 1 for batch in batches)
        assert set(items) == set(range(11))  # every item, each epoch
        if micro_batch == 1:
            assert sorted(items) == list(range(11))  # exactly once
        else:  # a bucket completes its last micro-batch with repeats: fewer than micro_batch per bucket
            assert all(count <= 2 for count in Counter(items).values())
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    again = BucketBatches(list(range(11)), item_buckets, micro_batch, seed=7, epochs=3)
    assert [again[p] for p in range(len(again))] == [order[p] for p in range(len(order))]  # a function of the seed
    other = BucketBatches(list(range(11)), item_buckets, micro_batch, seed=8, epochs=3)
    assert [other[p] for p in range(per_epoch)] != epochs[0]
