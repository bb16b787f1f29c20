import numpy as np
import pytest
import torch

from fewshot_det.data.build import build_train_loader, get_detection_dataset
from fewshot_det.data.mapper import DatasetMapper
from fewshot_det.data.samplers import InferenceSampler, TrainingSampler
from fewshot_det.data.transforms import (RandomHorizontalFlip, ResizeShortestEdge,
                                         build_transforms, shortest_edge_size)
from tiny_datasets import make_voc


def test_resize_shortest_edge_moves_boxes():
    img = np.zeros((100, 200, 3), np.uint8)
    boxes = np.array([[10, 20, 50, 60]], np.float32)
    out, b = ResizeShortestEdge([50], 1000)(img, boxes, np.random.default_rng(0))
    assert out.shape == (50, 100, 3)
    np.testing.assert_allclose(b, [[5, 10, 25, 30]])
    assert shortest_edge_size(100, 400, 50, 120) == (30, 120)  # long side capped


def test_range_sampling_within_bounds():
    t = ResizeShortestEdge([32, 48], 1000, "range")
    rng = np.random.default_rng(0)
    sizes = {t(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 4), np.float32), rng)[0].shape[0]
             for _ in range(50)}
    assert min(sizes) >= 32 and max(sizes) <= 48 and len(sizes) > 5


def test_flip_moves_boxes_and_pixels():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :5] = 255
    boxes = np.array([[0, 0, 5, 10]], np.float32)
    out, b = RandomHorizontalFlip(1.0)(img, boxes, np.random.default_rng(0))
    assert out[:, 15:].min() == 255 and out[:, :15].max() == 0
    np.testing.assert_allclose(b, [[15, 0, 20, 10]])


def test_training_sampler_resume_and_shards():
    full = TrainingSampler(7, seed=3)
    it = iter(full)
    stream = [next(it) for _ in range(30)]
    assert sorted(i for i, _ in stream[:7]) == list(range(7))  # a permutation per epoch
    assert [i for i, _ in stream[:7]] != [i for i, _ in stream[7:14]]
    resumed = iter(TrainingSampler(7, seed=3, start=12))
    assert [next(resumed) for _ in range(18)] == stream[12:]
    shards = [iter(TrainingSampler(7, seed=3, rank=r, world_size=2)) for r in range(2)]
    merged = [next(shards[p % 2]) for p in range(30)]
    assert merged == stream
    assert list(InferenceSampler(5, rank=1, world_size=2)) == [(3, 0), (4, 0)]


@pytest.fixture
def voc_records(tmp_path):
    root = make_voc(tmp_path / "voc", {
        f"im{i}": (80, 60, [("dog", [5 + i, 6, 30 + i, 40], 0), ("cat", [1, 1, 9, 9], 1)])
        for i in range(6)}, classes=["dog", "cat"])
    return get_detection_dataset([f"voc:{root}:train"])[0]


def test_mapper_output_contract(voc_records):
    mapper = DatasetMapper(transforms=build_transforms(
        is_train=True, resize_mode="shortest_edge", min_size_train=[30], max_size_train=100,
        min_size_sampling="choice", min_size_test=30, max_size_test=100, fixed_size=0,
        flip_prob=0.0))
    out = mapper(voc_records[0], np.random.default_rng(0))
    assert out["image"].shape == (3, 30, 40) and out["image"].dtype == torch.float32
    assert (out["height"], out["width"]) == (60, 80)
    inst = out["instances"]  # the difficult cat is not a training target
    assert inst["gt_labels"].tolist() == [1]
    torch.testing.assert_close(inst["gt_boxes"], torch.tensor([[2.5, 3.0, 15.0, 20.0]]))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resume_gives_same_batches(voc_records, workers):
    mapper = DatasetMapper(transforms=build_transforms(
        is_train=True, resize_mode="shortest_edge", min_size_train=[20, 30, 40],
        max_size_train=100, min_size_sampling="choice", min_size_test=30, max_size_test=100,
        fixed_size=0, flip_prob=0.5))

    def batches(start, n):
        it = iter(build_train_loader(voc_records, mapper, total_batch_size=2, seed=1,
                                     num_workers=workers, start_iter=start))
        return [[(x["image_id"], x["image"].shape, x["instances"]["gt_boxes"].tolist())
                 for x in next(it)] for _ in range(n)]

    full = batches(0, 6)
    assert batches(4, 2) == full[4:]
    assert len({s for b in full for _, s, _ in b}) > 1  # multi-scale really varies


def test_batch_seeds_shared_within_a_batch_resumable_and_sharded():
    full = TrainingSampler(7, seed=3, batch_size=4)
    it = iter(full)
    stream = [next(it) for _ in range(24)]
    assert [k[:2] for k in stream] == [k for k, _ in zip(TrainingSampler(7, seed=3), stream)]
    seeds = [k[2] for k in stream]
    assert all(len(set(seeds[b:b + 4])) == 1 for b in range(0, 24, 4))
    assert len(set(seeds)) == 6  # a new seed per batch
    resumed = iter(TrainingSampler(7, seed=3, start=8, batch_size=4))
    assert [next(resumed) for _ in range(16)] == stream[8:]
    shards = [iter(TrainingSampler(7, seed=3, rank=r, world_size=2, batch_size=4))
              for r in range(2)]
    assert [next(shards[p % 2]) for p in range(24)] == stream


@pytest.mark.parametrize("per_batch", [False, True])
def test_scale_per_batch_gives_one_size_per_batch(voc_records, per_batch):
    mapper = DatasetMapper(transforms=build_transforms(
        is_train=True, resize_mode="shortest_edge", min_size_train=[20, 30, 40],
        max_size_train=100, min_size_sampling="choice", min_size_test=30, max_size_test=100,
        fixed_size=0, flip_prob=0.5, scale_per_batch=per_batch))
    it = iter(build_train_loader(voc_records, mapper, total_batch_size=3, seed=1,
                                 batch_rng=per_batch))
    sizes = [[tuple(x["image"].shape) for x in next(it)] for _ in range(8)]
    mixed = sum(len(set(b)) > 1 for b in sizes)
    assert (mixed == 0) if per_batch else (mixed > 0)
    assert len({b[0] for b in sizes}) > 1  # the size still varies between batches
