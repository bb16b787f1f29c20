import numpy as np
import pytest
import torch

import fewshot_det
from fewshot_det.data.build import build_train_loader_from_config
from fewshot_det.data.episodes import (EpisodicMapper, SupportCropper, SupportPool,
                                       build_support_set, check_support_box, crop_support,
                                       restrict_to_classes, sample_episode_classes)
from fewshot_det.data.mapper import DatasetMapper
from fewshot_det.data.transforms import build_transforms


def _records(num_classes=6):
    """Image i holds classes i % num_classes and (i + 1) % num_classes (ids 1-based)."""
    return [{"file_name": f"/x/{i}.jpg", "image_id": i, "height": 50, "width": 60,
             "annotations": [{"bbox": [5.0, 5.0, 30.0, 40.0], "category_id": i % num_classes + 1,
                              "iscrowd": 0, "difficult": 0},
                             {"bbox": [30.0, 10.0, 55.0, 45.0],
                              "category_id": (i + 1) % num_classes + 1, "iscrowd": 0,
                              "difficult": 0}]}
            for i in range(12)]


def test_crop_support_maps_the_box_into_the_crop():
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:40, 50:90] = 255  # a 40 x 20 white box
    crop, box = crop_support(img, [50, 20, 90, 40], size=64, context=0.25)
    # side = 40 * 1.5 = 60 px -> scale 64 / 60; the box is centred, 40 px wide.
    np.testing.assert_allclose(box, [32 - 40 * 64 / 120, 32 - 20 * 64 / 120,
                                     32 + 40 * 64 / 120, 32 + 20 * 64 / 120], atol=1e-4)
    x1, y1, x2, y2 = np.round(box).astype(int)
    assert crop[y1 + 2:y2 - 2, x1 + 2:x2 - 2].min() > 200  # the object is inside
    assert crop[:y1 - 2].max() < 60 and crop.shape == (64, 64, 3)


def test_crop_support_near_the_border_fills_with_mean_colour():
    img = np.full((50, 50, 3), 100, np.uint8)
    crop, box = crop_support(img, [0, 0, 20, 20], size=32, context=0.5)
    assert crop[0, 0].tolist() == [100, 100, 100]  # outside the image: mean colour
    assert box.min() >= 0 and box.max() <= 32
    with pytest.raises(ValueError, match="no area"):
        crop_support(img, [5, 5, 5, 9], size=32, context=0.2)


def test_episode_classes_are_n_way_with_absent_negatives():
    rng = np.random.default_rng(0)
    pool = list(range(1, 9))
    for _ in range(50):
        ids = sample_episode_classes([2, 2, 5], pool, ways=5, min_negatives=2, rng=rng)
        assert len(ids) == len(set(ids)) == 5
        assert {2, 5} <= set(ids)  # both present classes fit (5 - 2 negatives = 3 slots)
        assert len(set(ids) - {2, 5}) == 3  # classes absent from the query
    # more present classes than slots: N - MIN_NEGATIVES positives, the rest absent
    ids = sample_episode_classes([1, 2, 3, 4, 5], pool, ways=4, min_negatives=1, rng=rng)
    assert len(set(ids) & {1, 2, 3, 4, 5}) == 3 and len(set(ids) - {1, 2, 3, 4, 5}) == 1
    # an image without objects: all negatives
    assert len(set(sample_episode_classes([], pool, ways=3, min_negatives=1, rng=rng))) == 3


def test_support_pool_avoids_the_query_image():
    records = _records()
    pool = SupportPool(records)
    assert pool.class_ids == [1, 2, 3, 4, 5, 6]
    rng = np.random.default_rng(0)
    key = ("0", "/x/0.jpg")
    for _ in range(20):
        for i, _ in pool.draw(1, 3, rng, exclude_image=key):
            assert i != 0
    # a class only in the query image: the query's own instance is the fallback
    only = SupportPool(records[:1])
    assert only.draw(1, 2, rng, exclude_image=key) == [(0, 0), (0, 0)]


def test_restrict_to_classes_drops_novel_boxes():
    records = _records(num_classes=3)
    kept = restrict_to_classes(records, ["a", "b", "c"], ["a", "c"])
    assert all(a["category_id"] in (1, 3) for r in kept for a in r["annotations"])
    assert len(kept) == len(records)  # images left empty stay (negatives)
    assert len(records[1]["annotations"]) == 2  # the input is not modified
    with pytest.raises(ValueError, match="not in the dataset"):
        restrict_to_classes(records, ["a", "b", "c"], ["zebra"])


@pytest.fixture(scope="module")
def edp(tmp_path_factory):
    from fewshot_fixtures import make_edp_tree

    return make_edp_tree(str(tmp_path_factory.mktemp("edp")))


def test_episodic_mapper_gives_n_way_k_shot_supports(edp):
    from fewshot_det.data import get_dataset

    records, _ = get_dataset(f"voc:{edp}:trainval")
    base = DatasetMapper(transforms=build_transforms(
        is_train=True, resize_mode="shortest_edge", min_size_train=(64,), max_size_train=200,
        min_size_sampling="choice", min_size_test=64, max_size_test=200, fixed_size=0,
        flip_prob=0.5))
    mapper = EpisodicMapper(base, records, SupportCropper(size=64, context=0.2), ways=3,
                            shots=2, min_negatives=1, flip_prob=0.5)
    out = mapper(records[0], np.random.default_rng(0))  # holds pole + insulator
    s = out["supports"]
    assert s["images"].shape == (6, 3, 64, 64) and s["images"].dtype == torch.float32
    assert s["boxes"].shape == (6, 4) and s["class_ids"].tolist() != []
    assert sorted(s["class_ids"].tolist()) == [1, 2, 3]  # 3-way with 3 classes
    assert s["labels"].tolist() == [c for c in s["class_ids"].tolist() for _ in range(2)]
    assert (s["boxes"][:, 2:] > s["boxes"][:, :2]).all() and s["boxes"].max() <= 64
    again = mapper(records[0], np.random.default_rng(0))
    assert torch.equal(again["supports"]["images"], s["images"])  # seeded
    # 2-way with MIN_NEGATIVES 1: one present class and bird_nest (absent) as the negative
    two = EpisodicMapper(base, records, SupportCropper(size=64), ways=2, min_negatives=1)
    for seed in range(5):
        ids = set(two(records[0], np.random.default_rng(seed))["supports"]["class_ids"].tolist())
        assert 3 in ids and len(ids & {1, 2}) == 1


def test_train_loader_hook_base_only_episodes(edp, tmp_path):
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('voc:{edp}:trainval',)", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "200",
        "SOLVER.IMS_PER_BATCH", "3", "OUTPUT_DIR", str(tmp_path),
        "FEWSHOT.NOVEL_CLASSES", "['insulator', 'bird_nest']", "FEWSHOT.TRAIN_CLASSES", "base",
        "FEWSHOT.EPISODE.ENABLED", "True", "FEWSHOT.EPISODE.WAYS", "3",
        "FEWSHOT.SUPPORT.SIZE", "64"])
    loader, metadata = build_train_loader_from_config(cfg)
    batch = next(iter(loader))
    assert metadata.novel_classes == ["insulator", "bird_nest"]
    for item in batch:
        assert set(item["instances"]["gt_labels"].tolist()) <= {1}  # novel boxes dropped
        # only "pole" has supports in base training: WAYS clamped to 1
        assert item["supports"]["class_ids"].tolist() == [1]
    cfg.FEWSHOT.TRAIN_CLASSES = "novel"
    with pytest.raises(ValueError, match="TRAIN_CLASSES"):
        build_train_loader_from_config(cfg)


def test_build_support_set_of_chosen_classes(edp):
    from fewshot_det.data import get_dataset

    records, _ = get_dataset(f"voc:{edp}:trainval")
    s = build_support_set(records[:3], SupportCropper(size=64), [2, 3])
    assert sorted(set(s["labels"].tolist())) == [2, 3]
    assert s["images"].shape[1:] == (3, 64, 64) and len(s["boxes"]) == len(s["labels"])
    with pytest.raises(ValueError, match="no support instance"):
        build_support_set(records[:1], SupportCropper(size=64), [3])  # image 0: no bird_nest


@pytest.mark.parametrize("box, message", [
    ([300, 300, 400, 400], r"^supports: class 'bird_nest', example 2: box \[300, 300, 400, "
                           r"400\] lies outside its 256 x 256 image$"),
    ([-40, -40, -1, -1], r"box \[-40, -40, -1, -1\] lies outside its 256 x 256 image"),
    ([256, 10, 300, 40], r"lies outside"),  # touches the right border from outside: no area
    ([], r"a box is 4 numbers \[x1, y1, x2, y2\], got \[\]"),
    ([1, 2, 3], r"a box is 4 numbers .*got \[1, 2, 3\]"),
    (None, r"a box is 4 numbers .*got None"),
    (["a", 1, 2, 3], r"a box is 4 numbers .*got \['a', 1, 2, 3\]"),
    ([1, 2, float("inf"), 4], r"box \[1, 2, inf, 4\] has a non-finite coordinate"),
    ([10, 10, 10, 40], r"box \[10, 10, 10, 40\] has no area"),
])
def test_support_boxes_are_checked_against_their_image(box, message):
    with pytest.raises(ValueError, match=message):
        check_support_box(box, (256, 256, 3), "supports: class 'bird_nest', example 2")


def test_support_box_on_the_border_is_kept_and_one_reaching_past_it_clipped(caplog):
    assert check_support_box([0, 0, 256, 256], (256, 256, 3), "s").tolist() == [0, 0, 256, 256]
    assert not caplog.records
    clipped = check_support_box(np.array([-20.0, 200, 100, 300]), (256, 256, 3), "s")
    assert clipped.tolist() == [0, 200, 100, 256]
    assert "s: box [-20, 200, 100, 300] reaches past its 256 x 256 image; clipped to " \
           "[0, 200, 100, 256]" in caplog.text


def test_support_crops_of_records_name_the_file_and_annotation(tmp_path):
    import cv2

    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((50, 60, 3), np.uint8))
    record = {"file_name": path, "image_id": 0, "height": 50, "width": 60,
              "annotations": [{"bbox": [5.0, 5.0, 30.0, 40.0], "category_id": 1},
                              {"bbox": [70.0, 60.0, 90.0, 80.0], "category_id": 1}]}
    cropper = SupportCropper(size=32)
    crops, boxes, labels = cropper.crop_instances([record], [(0, 0)])
    assert crops[0].shape == (32, 32, 3) and labels == [1]
    with pytest.raises(ValueError, match=rf"{path}: annotation 1: box \[70, 60, 90, 80\] lies "
                                         r"outside its 60 x 50 image"):
        cropper.crop_instances([record], [(0, 1)])
