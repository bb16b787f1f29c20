"""Large synthetic scenes with small objects (``data.synthetic_large``)."""
import hashlib

import cv2
import numpy as np
import pytest

from fewshot_det.data import get_dataset
from fewshot_det.data.fewshot.class_splits import SYNTHETIC_CLASSES
from fewshot_det.data.synthetic import _background
from fewshot_det.data.synthetic_large import (CHAIN, _chain_mask, generate_large_scenes,
                                              render_large_scene)


def test_small_separate_objects_of_the_chosen_classes():
    img, objects = render_large_scene(np.random.default_rng(3), 640, 480,
                                      classes=["circle", "square"], num_objects=(10, 12))
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert 8 <= len(objects) <= 12 and {o["name"] for o in objects} <= {"circle", "square"}
    boxes = np.array([o["box"] for o in objects])
    sides = boxes[:, 2:] - boxes[:, :2] + 1
    assert sides.max() <= 48 and sides.min() >= 6
    for i, a in enumerate(boxes):  # no two boxes overlap
        for b in boxes[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    again, _ = render_large_scene(np.random.default_rng(3), 640, 480,
                                  classes=["circle", "square"], num_objects=(10, 12))
    assert np.array_equal(img, again)


def test_written_as_a_voc_test_split_with_every_shape_class(tmp_path):
    spec = generate_large_scenes(str(tmp_path), 2, width=400, height=300, classes=["ring"])
    records, metadata = get_dataset(spec)
    assert list(metadata.thing_classes) == list(SYNTHETIC_CLASSES)
    assert len(records) == 2 and records[0]["width"] == 400 and records[0]["height"] == 300
    ring = SYNTHETIC_CLASSES.index("ring") + 1
    assert {a["category_id"] for r in records for a in r["annotations"]} == {ring}
    with pytest.raises(ValueError, match="unknown classes \\['blob'\\]"):
        generate_large_scenes(str(tmp_path / "x"), 1, classes=["blob"])


def test_without_large_objects_a_scene_is_what_it_always_was():
    # the image bytes and boxes of this scene before large objects existed
    for kwargs in ({}, {"large_objects": 0}):
        img, objects = render_large_scene(np.random.default_rng(11), 320, 240,
                                          num_objects=(6, 8), **kwargs)
        assert hashlib.sha256(img.tobytes()).hexdigest() == (
            "92f84555c6728b7935242079c038f93879aa51cc5cc6b9ce1691506fe953f8e5")
        assert objects == [
            {"name": "arrow", "box": [100, 174, 130, 191]},
            {"name": "diamond", "box": [164, 132, 175, 153]},
            {"name": "star", "box": [27, 108, 72, 152]},
            {"name": "circle", "box": [261, 76, 279, 94]},
            {"name": "crescent", "box": [245, 114, 258, 125]},
            {"name": "circle", "box": [42, 165, 64, 187]},
            {"name": "circle", "box": [60, 28, 92, 60]},
            {"name": "cross", "box": [297, 185, 308, 196]}]


def _sides(objects):
    boxes = np.array([o["box"] for o in objects]).reshape(-1, 4)
    return boxes, boxes[:, 2:] - boxes[:, :2] + 1


def test_large_objects_beside_the_small_ones_in_range_and_apart():
    names = set()
    for seed in range(4):
        img, objects = render_large_scene(np.random.default_rng(seed), 640, 480,
                                          classes=["circle", "cross"], num_objects=(8, 10),
                                          large_objects=(1, 3), large_px=(100, 400))
        large = [o for o in objects if max(_sides([o])[1][0]) > 60]  # small: <= 49
        assert 1 <= len(large) <= 3 and objects[:len(large)] == large  # drawn first
        assert len(objects) - len(large) >= 6  # the small ones still find room
        names |= {o["name"] for o in large}
        boxes, sides = _sides(objects)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] < 640).all() \
            and (boxes[:, 3] < 480).all()
        longest = sides[:len(large)].max(axis=1)
        # a shape's diameter or a chain's length (a tilted chain's box is a little longer)
        assert (longest >= 50).all() and (longest <= 400 * 1.15).all()
        for i, a in enumerate(boxes):  # no two boxes overlap
            for b in boxes[i + 1:]:
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    assert names == {CHAIN, "circle", "cross"}


def test_a_chain_is_one_connected_string_of_its_length():
    for seed in range(6):
        coverage = _chain_mask(np.random.default_rng(seed), 400.0)
        count, _ = cv2.connectedComponents((coverage > 0.5).astype(np.uint8))
        assert count == 2  # the background and one chain
        assert 0.9 * 400 <= max(coverage.shape) <= 1.15 * 400


def test_the_chain_box_covers_every_link():
    seed = next(s for s in range(20) if render_large_scene(
        np.random.default_rng(s), 640, 480, num_objects=(0, 0), large_objects=1,
        large_px=(200, 400))[1][0]["name"] == CHAIN)
    img, (chain,) = render_large_scene(np.random.default_rng(seed), 640, 480,
                                       num_objects=(0, 0), large_objects=1,
                                       large_px=(200, 400))
    # the scene's first draws are its background: what the chain changed is the rest
    background = _background(np.random.default_rng(seed), 640)[:480, :640]
    ys, xs = np.nonzero(np.abs(img - background).max(axis=2) > 50)
    x1, y1, x2, y2 = chain["box"]
    # every changed pixel lies in the box (its anti-aliased rim: 1 px), and reaches its sides
    assert x1 - 1 <= xs.min() <= x1 + 1 and x2 - 1 <= xs.max() <= x2 + 1
    assert y1 - 1 <= ys.min() <= y1 + 1 and y2 - 1 <= ys.max() <= y2 + 1


def test_large_scenes_written_with_the_chain_class_last(tmp_path):
    spec = generate_large_scenes(str(tmp_path), 2, width=400, height=300, classes=["ring"],
                                 large_objects=2, large_px=(80, 200), split="train")
    assert spec == f"voc:{tmp_path}:train"
    records, metadata = get_dataset(spec)
    assert list(metadata.thing_classes) == list(SYNTHETIC_CLASSES) + [CHAIN]
    labels = {a["category_id"] for r in records for a in r["annotations"]}
    assert labels <= {SYNTHETIC_CLASSES.index("ring") + 1, len(SYNTHETIC_CLASSES) + 1}
    with pytest.raises(ValueError, match="\\['chain'\\] are not in class_list"):
        generate_large_scenes(str(tmp_path / "x"), 1, large_objects=1,
                              class_list=SYNTHETIC_CLASSES)
    with pytest.raises(ValueError, match="large_objects"):
        render_large_scene(np.random.default_rng(0), 400, 300, large_objects=(3, 1))
