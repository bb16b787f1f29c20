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
    # on_object 1: half the windows are drawn around the small object (the other half on
    # a random part of the large one, which does not fit in a tile)
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


def test_tile_crop_keeps_the_pieces_of_cut_objects_as_labels():
    from fewshot_det.data.transforms import RandomTileCrop

    image = RNG.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    rng = np.random.default_rng(3)
    rng.random()  # the on-object draw
    x0, y0 = int(rng.integers(0, 900 - 256 + 1)), int(rng.integers(0, 700 - 256 + 1))
    boxes = np.array([[-300, 20, 100, 120],  # 100 x 100 of 400 x 100 visible: a piece
                      [-100, 150, 10, 200],  # 10 x 50 of 110 x 50: a sliver
                      [200, 200, 300, 240],  # 56 of 100 columns: most of it
                      [300, 0, 400, 50]],  # outside
                     np.float32) + np.array([x0, y0, x0, y0], np.float32)
    crop = RandomTileCrop(256, min_visible=0.5, on_object=0.0, min_piece=16)
    out, moved = crop(image, boxes, np.random.default_rng(3))
    assert np.array_equal(out, image[y0:y0 + 256, x0:x0 + 256])
    assert moved.tolist() == [[0, 20, 100, 120], [0, 0, 0, 0], [200, 200, 256, 240],
                              [0, 0, 0, 0]]
    # a larger MIN_PIECE drops the piece: it keeps only 0.25 of the object
    _, moved = RandomTileCrop(256, 0.5, 0.0, min_piece=101)(image, boxes,
                                                             np.random.default_rng(3))
    assert moved[0].tolist() == [0, 0, 0, 0]


def test_tile_crop_shows_every_part_of_an_object_larger_than_the_tile():
    from fewshot_det.data.transforms import RandomTileCrop

    image = np.zeros((400, 4000, 3), np.uint8)
    columns = np.arange(4000)
    image[:, :, 0], image[:, :, 1] = columns % 256, columns // 256  # x readable from pixels
    boxes = np.array([[100, 150, 1900, 250]], np.float32)  # 1800 px long, 100 px tall
    crop, rng = RandomTileCrop(256, on_object=1.0), np.random.default_rng(0)
    centres = []
    for _ in range(200):
        out, moved = crop(image, boxes, rng)
        x0 = int(out[0, 0, 0]) + 256 * int(out[0, 0, 1])
        centres.append(x0 + 128)
        # held whole vertically, where it fits; the window's centre on the object
        assert moved[0, 1] >= 0 and moved[0, 3] <= 256 and moved[0, 3] - moved[0, 1] == 100
        assert 100 <= x0 + 128 <= 1900 and moved[0, 2] - moved[0, 0] >= 128
    # spread over the whole object, not only around its centre (1000)
    assert min(centres) < 300 and max(centres) > 1700


def test_tile_crop_leaves_whole_images_with_whole_image_prob():
    from fewshot_det.data.transforms import RandomTileCrop

    image = RNG.integers(0, 256, (600, 900, 3), dtype=np.uint8)
    boxes = np.array([[700, 500, 740, 560]], np.float32)
    rng = np.random.default_rng(0)
    whole = [RandomTileCrop(256, whole_image_prob=0.5)(image, boxes, rng)[0] is image
             for _ in range(400)]
    assert 0.4 < np.mean(whole) < 0.6
    out, moved = RandomTileCrop(256, whole_image_prob=1.0)(image, boxes, rng)
    assert out is image and moved is boxes
    for bad in ({"whole_image_prob": 1.5}, {"min_piece": 0}):
        with pytest.raises(ValueError, match="INPUT.TILE_CROP: SIZE >= 16, MIN_PIECE >= 1"):
            RandomTileCrop(256, **bad)


def test_tile_crop_keys_reach_the_transform():
    from fewshot_det import get_cfg
    from fewshot_det.data.transforms import RandomTileCrop, transforms_from_config

    cfg = get_cfg()
    assert cfg.INPUT.TILE_CROP.WHOLE_IMAGE_PROB == 0.0  # tiles only, unless asked
    cfg.merge_from_list(["INPUT.TILE_CROP.ENABLED", "True", "INPUT.TILE_CROP.MIN_PIECE", "8",
                         "INPUT.TILE_CROP.WHOLE_IMAGE_PROB", "0.5"])
    crop = transforms_from_config(cfg, is_train=True)[0]
    assert isinstance(crop, RandomTileCrop)
    assert (crop.min_piece, crop.whole_image_prob) == (8, 0.5)
    assert not isinstance(transforms_from_config(cfg, is_train=False)[0], RandomTileCrop)
