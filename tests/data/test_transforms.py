"""The three shortest-edge resize backends: their sizes, pixels and boxes."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fewshot_det.data.transforms import ResizeShortestEdge, shortest_edge_size

RNG = np.random.default_rng(0)


def test_sizes_follow_detectron2s_rounding():
    # detectron2 scales the short side first, then the pair to the long-side cap, and
    # rounds each side to nearest; 54 of 315,000 (h, w, short, cap) cases differ from
    # scaling each side once by min(short / min side, cap / max side).
    assert shortest_edge_size(480, 640, 800, 1333) == (800, 1067)
    assert shortest_edge_size(640, 480, 800, 1333) == (1067, 800)
    assert shortest_edge_size(300, 1000, 800, 1333) == (400, 1333)  # capped
    assert shortest_edge_size(333, 333, 288, 512) == (288, 288)


def test_pil_backend_is_pils_bilinear_on_uint8():
    image = RNG.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 100, 200]], np.float32)
    out, moved = ResizeShortestEdge([200], 1000, backend="pil")(image, boxes, RNG)
    expected = np.asarray(Image.fromarray(image).resize((304, 200), Image.BILINEAR))
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    np.testing.assert_allclose(moved, boxes * np.array([304 / 457, 200 / 301] * 2), rtol=1e-6)
    opencv, _ = ResizeShortestEdge([200], 1000)(image, boxes, RNG)
    assert opencv.shape == out.shape and np.abs(opencv.astype(int) - out).max() > 20


@pytest.mark.parametrize("hw", [(120, 160), (701, 333), (250, 1000), (57, 77)])
def test_torchvision_backend_matches_generalized_rcnn_transform(hw):
    image = RNG.integers(0, 256, (*hw, 3), dtype=np.uint8)
    transform = GeneralizedRCNNTransform(192, 320, [0.0] * 3, [1.0 / 255] * 3).eval()
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255
    target = {"boxes": torch.tensor([[3.0, 4.0, 50.0, 40.0]], dtype=torch.float64)}
    images, targets = transform([x], [target])
    (h, w), expected = images.image_sizes[0], images.tensors[0, :, :images.image_sizes[0][0],
                                                               :images.image_sizes[0][1]]
    out, boxes = ResizeShortestEdge([192], 320, backend="torchvision")(
        image, target["boxes"].numpy().astype(np.float32), RNG)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.transpose(2, 0, 1), expected.numpy(), atol=1e-4)
    np.testing.assert_allclose(boxes, targets[0]["boxes"].numpy(), rtol=1e-6)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="resize backend must be one of .*'cv2'"):
        ResizeShortestEdge([200], 1000, backend="cv2")


def test_tile_crop_keeps_full_resolution_and_finds_the_objects():
    from fewshot_det.data.transforms import RandomTileCrop

    image = RNG.integers(0, 256, (600, 900, 3), dtype=np.uint8)
    boxes = np.array([[700, 500, 740, 560], [10, 10, 300, 300]], np.float32)
    crop = RandomTileCrop(256, min_visible=0.5, on_object=1.0)
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(20):
        out, moved = crop(image, boxes, rng)
        assert out.shape == (256, 256, 3)
        seen += bool((moved[0, 2] - moved[0, 0]) == 40)  # the small object, whole
    # on_object 1: half the windows are drawn around the small object (the other half
    # around the large one, which does not fit in a tile: those are uniform)
    assert seen >= 6
    # the window's pixels are the image's own (no resize)
    out, moved = RandomTileCrop(256, on_object=0.0)(image, boxes, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    rng.random()  # the on-object draw
    x0, y0 = int(rng.integers(0, 900 - 256 + 1)), int(rng.integers(0, 600 - 256 + 1))
    assert np.array_equal(out, image[y0:y0 + 256, x0:x0 + 256])
    # no larger than a tile: unchanged
    small = image[:200, :250]
    assert RandomTileCrop(256)(small, boxes[:1], rng)[0] is small
