"""YOLO training augmentation (fewshot_det/data/yolo_transforms.py): boxes follow pixels,
boxes that leave the image become empty (never removed), colour jitter keeps geometry."""
import numpy as np
import pytest

from fewshot_det.data.transforms import apply_transforms
from fewshot_det.data.yolo_transforms import (RandomCrop, RandomHSV, RandomScaleShift,
                                              build_yolo_train_transforms, clip_boxes)


def square_image(size=100, box=(20, 30, 50, 70)):
    """Black image with one white rectangle (x1, y1, x2, y2), and its box."""
    img = np.zeros((size, size, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img, np.array([box], np.float32)


def white_extent(img):
    ys, xs = np.nonzero(img[..., 0] > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_clip_boxes_empties_mostly_hidden_and_outside_boxes():
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    moved = np.array([[-5, 0, 5, 10], [-8, 0, 2, 10], [20, 20, 30, 30]], np.float32)
    out = clip_boxes(before, moved, 15, 15, min_visible=0.25)
    assert out.tolist() == [[0, 0, 5, 10], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_crop_moves_boxes_with_the_pixels():
    img, boxes = square_image()
    for seed in range(5):
        out, b = RandomCrop(prob=1.0, min_frac=0.6, min_visible=0.0)(img, boxes,
                                                                     np.random.default_rng(seed))
        assert 60 <= out.shape[0] <= 100 and 60 <= out.shape[1] <= 100
        if b[0, 2] > b[0, 0]:
            assert white_extent(out) == pytest.approx(b[0].tolist(), abs=1)
    same, b = RandomCrop(prob=0.0)(img, boxes, np.random.default_rng(0))
    assert same is img and b is boxes


def test_scale_shift_moves_boxes_with_the_pixels():
    img, boxes = square_image()
    for seed in range(5):
        out, b = RandomScaleShift(scale=0.2, shift=0.2, min_visible=0.0)(
            img, boxes, np.random.default_rng(seed))
        assert out.shape == img.shape
        assert white_extent(out) == pytest.approx(b[0].tolist(), abs=1.5)


def test_hsv_changes_colours_not_boxes_and_respects_the_channel_order():
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, (16, 16, 3), dtype=np.uint8)
    boxes = np.array([[1, 2, 3, 4]], np.float32)
    out, b = RandomHSV(hue=0.1, saturation=1.5, exposure=1.5)(img, boxes, np.random.default_rng(1))
    assert b is boxes and out.shape == img.shape and not np.array_equal(out, img)
    grey = np.full((4, 4, 3), 100, np.uint8)  # no saturation: exposure only, same in RGB/BGR
    a, _ = RandomHSV(0, 1.0, 1.5, "BGR")(grey, boxes, np.random.default_rng(2))
    c, _ = RandomHSV(0, 1.0, 1.5, "RGB")(grey, boxes, np.random.default_rng(2))
    assert np.array_equal(a, c) and len(np.unique(a)) == 1
    with pytest.raises(ValueError, match="INPUT.YOLO_AUG.HUE"):
        RandomHSV(hue=0.7)


def test_pipeline_output_size_and_row_count():
    ts = build_yolo_train_transforms(fixed_size=64, flip_prob=0.5, image_format="BGR",
                                     crop_prob=1.0, crop_min=0.5, scale=0.2, shift=0.2,
                                     hue=0.05, saturation=1.5, exposure=1.5, min_visible=0.25)
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 40, 40], [100, 60, 119, 89], [50, 20, 70, 50]], np.float32)
    for seed in range(20):
        out, b = apply_transforms(ts, img, boxes, np.random.default_rng(seed))
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
        assert b.shape == (3, 4) and (b >= 0).all() and (b <= 64).all()
    with pytest.raises(ValueError, match="INPUT.YOLO_AUG.CROP_PROB"):
        RandomCrop(prob=1.5)
    with pytest.raises(ValueError, match="INPUT.YOLO_AUG.SCALE"):
        RandomScaleShift(scale=1.0)
