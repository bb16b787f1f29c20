"""Sliced inference (``engine.slicing``): tiles, boxes mapped back, merging across tiles."""
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from fewshot_det import get_cfg
from fewshot_det.config.validate import validate_cfg
from fewshot_det.engine import slicing
from fewshot_det.engine.slicing import (LOG_TILES, MAX_TILES, SlicedInference,
                                        cut_by_tile, merge_detections, tile_count, tile_grid,
                                        tile_origins)


def test_tiles_cover_the_image_with_the_overlap_and_end_on_its_edges():
    assert tile_origins(100, 100, 0.25) == [0]  # no larger than a tile: one
    assert tile_origins(1000, 400, 0.25) == [0, 300, 600]  # stride 300, last ends at 1000
    assert tile_origins(700, 400, 0.5) == [0, 200, 300]
    grid = tile_grid(500, 1000, 400, 0.25)
    assert grid[0] == (0, 0, 400, 400) and grid[-1] == (600, 100, 1000, 500)
    assert len(grid) == 3 * 2


class BoxesAt(nn.Module):
    """A stand-in detector: one box around every white pixel blob of the (resized) input,
    reported in the input item's original pixels, as a real model does."""

    def forward(self, batch):
        out = []
        for item in batch:
            img = item["image"][0]
            h, w = img.shape
            sy, sx = item["height"] / h, item["width"] / w
            ys, xs = torch.nonzero(img > 128, as_tuple=True)
            boxes = torch.zeros(0, 4)
            if len(ys):
                boxes = torch.tensor([[xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx,
                                       (ys.max() + 1) * sy]], dtype=torch.float32)
            out.append({"boxes": boxes, "scores": torch.ones(len(boxes)),
                        "labels": torch.ones(len(boxes), dtype=torch.int64)})
        return out


def _sliced(size=100, overlap=0.2, whole_image=False, batch=3):
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", "10000",
                         "TEST.SLICE.SIZE", str(size), "TEST.SLICE.OVERLAP", str(overlap),
                         "TEST.SLICE.WHOLE_IMAGE", str(whole_image),
                         "TEST.SLICE.BATCH", str(batch)])
    return SlicedInference.from_config(cfg, BoxesAt())


def _image(h, w, *boxes):
    img = np.zeros((h, w, 3), np.uint8)
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = 255
    return img


def test_a_box_inside_one_tile_comes_back_in_image_pixels():
    # 300 x 250, tiles of 100 at a stride of 80: x origins 0, 80, 160, 200; y origins 0, 80,
    # 150. The object x 130..150, y 170..190 lies whole in the tile at (80, 150); the tile
    # at (80, 80) sees its top 10 rows, cut by that tile's bottom edge: one box comes back.
    sliced = _sliced()
    out = sliced.detect(_image(250, 300, (130, 170, 150, 190)))
    assert out["boxes"].tolist() == [[130.0, 170.0, 150.0, 190.0]]


def test_an_object_cut_by_a_tile_border_gives_one_box():
    # x 150..230 crosses the tiles 80..180, 160..260 and the border at 180; no tile holds
    # it whole (it is wider than the 20-px overlap): the pieces are joined into one box
    sliced = _sliced()
    out = sliced.detect(_image(250, 300, (150, 100, 230, 130)))
    assert out["boxes"].tolist() == [[150.0, 100.0, 230.0, 130.0]]
    # two separate objects stay two
    out = sliced.detect(_image(250, 300, (10, 10, 30, 30), (200, 200, 220, 220)))
    assert sorted(out["boxes"].tolist()) == [[10.0, 10.0, 30.0, 30.0],
                                             [200.0, 200.0, 220.0, 220.0]]


def test_an_image_no_larger_than_a_tile_is_inferred_as_usual():
    from fewshot_det.data.mapper import image_to_tensor
    from fewshot_det.data.transforms import apply_transforms

    img = _image(90, 100, (5, 5, 40, 50))
    sliced = _sliced(whole_image=True)
    # the usual path: the test resize (short side 100 here), then the model
    resized, _ = apply_transforms(sliced.transforms, img, np.zeros((0, 4), np.float32),
                                  np.random.default_rng(0))
    assert resized.shape[:2] == (100, 111)
    plain = BoxesAt()([{"image": image_to_tensor(resized), "height": 90, "width": 100}])[0]
    got = sliced([{"image": image_to_tensor(img), "height": 90, "width": 100}])[0]
    assert all(torch.equal(got[k], plain[k]) for k in plain)


def test_merge_keeps_distinct_classes_and_the_best_score():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 10, 10], [0, 0, 10, 10.]])
    no = torch.zeros(3, dtype=torch.bool)
    out = merge_detections(boxes, torch.tensor([0.5, 0.9, 0.8]), torch.tensor([1, 1, 2]), no,
                           no, tile_size=100, iou_thresh=0.5, ios_thresh=0.6,
                           max_detections=10)
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert out["labels"].tolist() == [1, 2]
    assert cut_by_tile(torch.tensor([[0., 0, 5, 5], [50, 50, 60, 60]]), (0, 0, 100, 100),
                       200, 200).tolist() == [False, False]
    assert cut_by_tile(torch.tensor([[90., 0, 99, 5]]), (0, 0, 100, 100), 200, 200).tolist() \
        == [True]


def _merge(dets, tile_size=200, whole_from=160.0):
    """merge_detections of (box, score, label, cut, from_whole) rows; objects with a side
    of 160 px or more come from the whole-image pass."""
    boxes, scores, labels, cut, whole = zip(*dets)
    return merge_detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores),
                            torch.tensor(labels), torch.tensor(cut), torch.tensor(whole),
                            tile_size=tile_size, iou_thresh=0.5, ios_thresh=0.6,
                            max_detections=100, whole_from=whole_from)


def _iou(a, b):
    from torchvision.ops import box_iou

    return float(box_iou(torch.tensor([a], dtype=torch.float32),
                         torch.tensor([b], dtype=torch.float32))[0, 0])


def _tile_pieces(obj, label=1, score=0.9, h=600, w=600, size=200, overlap=0.25):
    """What every tile of an h x w image sees of the object ``obj`` (XYXY): its visible
    part, as (box, score, label, cut, from_whole) rows."""
    rows = []
    for tile in tile_grid(h, w, size, overlap):
        box = torch.tensor([[max(obj[0], tile[0]), max(obj[1], tile[1]),
                             min(obj[2], tile[2]), min(obj[3], tile[3])]], dtype=torch.float32)
        if (box[0, 2:] > box[0, :2]).all():
            rows.append((box[0].tolist(), score, label, bool(cut_by_tile(box, tile, h, w)),
                         False))
    return rows


def test_a_large_whole_image_detection_is_not_lost_to_its_pieces():
    # 600 x 600, tiles of 200 at a stride of 150: an object twice the tile is cut into 16
    # pieces (0.9), the whole-image pass boxes it a few pixels off (0.6); one tile also
    # scores a part of it that touches no tile border (a quarter of a tile)
    obj, found = [100, 100, 500, 500], [96, 104, 505, 498]
    pieces = _tile_pieces(obj)
    assert len(pieces) == 16 and all(cut for _, _, _, cut, _ in pieces)
    out = _merge(pieces + [([160, 160, 260, 260], 0.9, 1, False, False),
                           (found, 0.6, 1, False, True)])
    assert out["boxes"].tolist() == [found] and _iou(found, obj) > 0.9
    assert out["scores"].tolist() == pytest.approx([0.6])


def test_overlapping_large_objects_of_one_class_stay_apart():
    # two large objects whose boxes overlap (as two diagonal ones do): the tiles' pieces
    # of one do not grow the other
    a, b = [0, 0, 300, 450], [200, 150, 500, 600]
    out = _merge(_tile_pieces(a) + _tile_pieces(b) + [(a, 0.6, 1, False, True),
                                                       (b, 0.5, 1, False, True)])
    assert out["boxes"].tolist() == [a, b]
    assert out["scores"].tolist() == pytest.approx([0.6, 0.5])


def test_tiles_still_win_over_a_whole_image_box_smaller_than_a_tile():
    # below whole_from: the sharper, better-scored tile box wins as in NMS
    small = [10, 10, 10 + 160 - 1, 60]
    out = _merge([(small, 0.6, 1, False, True), ([12, 10, small[2], 60], 0.9, 1, False, False)])
    assert out["scores"].tolist() == pytest.approx([0.9])


def test_a_small_object_cut_by_a_tile_border_is_joined_next_to_a_large_one():
    # x 230..330 in tiles x 100..300 and 250..450: two pieces, one cut at x = 300, one at
    # x = 250, become one box; the large whole-image box of the same class above is kept
    out = _merge([([230, 500, 300, 520], 0.8, 1, True, False),
                  ([250, 500, 330, 520], 0.9, 1, True, False),
                  ([0, 0, 400, 300], 0.6, 1, False, True)])
    assert sorted(out["boxes"].tolist()) == [[0, 0, 400, 300], [230, 500, 330, 520]]


def test_small_objects_beside_a_large_box_of_another_class_survive():
    out = _merge([([0, 0, 400, 400], 0.6, 2, False, True),
                  ([390, 100, 420, 130], 0.9, 1, True, False),
                  ([300, 200, 330, 230], 0.8, 1, False, False),
                  ([340, 200, 370, 230], 0.7, 1, False, False)])
    assert out["labels"].tolist() == [1, 1, 1, 2]
    assert len(out["boxes"]) == 4


def test_a_small_uncut_object_inside_a_large_one_of_its_class_is_its_own_object():
    # 40 x 40 inside a 400 x 400 whole-image box (1 % of its area), whole in its tile: an
    # object of its own. The same box touching a tile border is a piece of the large one.
    big = ([0, 0, 400, 400], 0.6, 1, False, True)
    out = _merge([big, ([180, 180, 220, 220], 0.9, 1, False, False)])
    assert out["boxes"].tolist() == [[180, 180, 220, 220], [0, 0, 400, 400]]
    out = _merge([big, ([180, 180, 220, 220], 0.9, 1, True, False)])
    assert out["boxes"].tolist() == [[0, 0, 400, 400]]


class Blobs(nn.Module):
    """A stand-in detector: one box per blob of bright pixels of the (resized) input, of
    label 1 (grey 128) or 2 (white), in the input's original pixels; a whole image (larger
    than ``tile``) scores 0.6, a tile 0.9."""

    def __init__(self, tile: int):
        super().__init__()
        self.tile = tile

    def forward(self, batch):
        import cv2

        out = []
        for item in batch:
            img = item["image"][0].numpy()
            sy, sx = item["height"] / img.shape[0], item["width"] / img.shape[1]
            count, comp, stats, _ = cv2.connectedComponentsWithStats(
                (img > 64).astype(np.uint8), connectivity=4)
            boxes, labels = [], []
            for k in range(1, count):
                x, y, w, h = stats[k, :4]
                boxes.append([x * sx, y * sy, (x + w) * sx, (y + h) * sy])
                labels.append(2 if img[comp == k].max() > 192 else 1)
            score = 0.6 if max(item["height"], item["width"]) > self.tile else 0.9
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.full((len(boxes),), score),
                        "labels": torch.tensor(labels, dtype=torch.int64)})
        return out


def test_sliced_inference_keeps_large_objects_and_joins_cut_small_ones():
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", "100", "INPUT.MAX_SIZE_TEST", "10000",
                         "TEST.SLICE.SIZE", "100", "TEST.SLICE.OVERLAP", "0.2",
                         "TEST.SLICE.WHOLE_IMAGE", "True"])
    sliced = SlicedInference.from_config(cfg, Blobs(tile=100))
    # 500 x 500, tiles of 100 at a stride of 80 (x, y origins 0, 80, ..., 320, 400):
    # a 200 x 200 object (label 2) seen in pieces by 16 tiles and whole by the whole
    # image pass; a 50 x 20 object (label 1) across the tile border at x = 100, in no
    # tile whole
    img = np.zeros((500, 500, 3), np.uint8)
    img[150:350, 150:350] = 255
    img[420:440, 75:125] = 128
    out = sliced.detect(img)
    by_label = {int(k): out["boxes"][out["labels"] == k].tolist() for k in (1, 2)}
    assert len(by_label[2]) == 1 and _iou(by_label[2][0], [150, 150, 350, 350]) > 0.9
    assert out["scores"][out["labels"] == 2].tolist() == pytest.approx([0.6])
    assert by_label[1] == [[75.0, 420.0, 125.0, 440.0]]


def test_slice_keys_are_checked():
    from fewshot_det.config.validate import validate_cfg

    cfg = get_cfg()
    cfg.merge_from_list(["TEST.SLICE.OVERLAP", "1.0"])
    with pytest.raises(ValueError, match=r"TEST.SLICE.OVERLAP must be in \[0, 1\), got 1.0"):
        validate_cfg(cfg)


def _tile_calls(predictor, monkeypatch):
    """Count the model calls and the images per call."""
    calls = []
    model = predictor.model
    real = model.forward

    def counting(batch):
        calls.append(len(batch))
        return real(batch)

    monkeypatch.setattr(model, "forward", counting)
    return calls


@pytest.mark.parametrize("family", ["rcnn", "siamese", "yolo"])
def test_every_model_family_runs_sliced_through_predictor(tmp_path, family, monkeypatch):
    import fewshot_det
    from fewshot_fixtures import tiny_cfg, tiny_model

    slicing = ["TEST.SLICE.ENABLED", "True", "TEST.SLICE.SIZE", "96",
               "TEST.SLICE.OVERLAP", "0.25", "TEST.SLICE.BATCH", "4"]
    if family == "yolo":
        from test_predictor import YOLO_CFG, _yolo_checkpoint
        from fewshot_det.config import load_cfg

        path = _yolo_checkpoint(tmp_path, ["a", "b", "c"])
        cfg = load_cfg(YOLO_CFG, ["MODEL.WEIGHTS", path, "MODEL.DEVICE", "cpu"] + slicing)
        predictor = fewshot_det.Predictor(cfg)
    else:
        siamese = family == "siamese"
        path = str(tmp_path / "model.pth")
        torch.save({"model": tiny_model(siamese=siamese).state_dict(),
                    "extra": {"thing_classes": ["a", "b", "c"]}}, path)
        cfg = tiny_cfg("MODEL.WEIGHTS", path, "INPUT.MIN_SIZE_TEST", "96",
                       "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *slicing, siamese=siamese)
        image = np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)
        supports = {"nest": [(image, [10, 10, 50, 60])]} if siamese else None
        predictor = fewshot_det.Predictor(cfg, supports=supports)
    calls = _tile_calls(predictor, monkeypatch)
    big = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    out = predictor(big)
    # 3 x 4 tiles of 96 (stride 72) in batches of 4, then the whole image
    assert calls == [4, 4, 4, 1]
    boxes = out["boxes"]
    assert len(boxes) and (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 300).all()
    assert (boxes[:, 3] <= 200).all() and len(out["class_names"]) == len(boxes)


def test_evaluation_slices_the_original_images(tmp_path, monkeypatch):
    import json

    from fewshot_det.engine.train_loop import evaluate_model
    from fewshot_fixtures import tiny_cfg, tiny_model
    from tiny_datasets import make_voc

    root = make_voc(tmp_path / "voc", {"big": (300, 200, [("a", [10, 10, 60, 60], 0)])},
                    split="test", classes=["a", "b", "c"])
    cfg = tiny_cfg("DATASETS.TEST", f"('voc:{root}:test',)", "OUTPUT_DIR", str(tmp_path),
                   "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TEST", "96",
                   "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.SLICE.ENABLED", "True",
                   "TEST.SLICE.SIZE", "96", siamese=False)
    model = tiny_model(siamese=False).eval()
    seen = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda batch: seen.append(
        [tuple(x["image"].shape[1:]) for x in batch]) or real(batch))
    evaluate_model(cfg, model)
    # the loader gave the 200 x 300 original; the model saw 96 x 96 tiles, then the whole
    # image resized to a short side of 96
    assert seen[0] == [(96, 96)] * 4 and seen[-1] == [(96, 144)]
    (folder,) = [p for p in (tmp_path / "inference").iterdir()]
    results = json.loads((folder / "predictions.json").read_text())
    assert results and all(r["bbox"][0] + r["bbox"][2] <= 300.01 for r in results)


@pytest.mark.parametrize("h, w, size, overlap", [
    (100, 100, 100, 0.25), (500, 1000, 400, 0.25), (700, 400, 400, 0.5), (513, 512, 256, 0.0),
    (512, 512, 256, 0.99), (3000, 4000, 512, 0.3), (97, 1001, 16, 0.1)])
def test_tile_count_is_known_before_listing_the_tiles(h, w, size, overlap):
    assert tile_count(h, w, size, overlap) == len(tile_grid(h, w, size, overlap))


class MustNotRun(nn.Module):
    def forward(self, batch):
        raise AssertionError("the model ran")


def test_too_many_tiles_is_an_error_before_any_tile_runs():
    assert tile_count(512, 512, 256, 0.99) == 16641
    cfg = get_cfg()
    cfg.merge_from_list(["TEST.SLICE.SIZE", "256", "TEST.SLICE.OVERLAP", "0.99"])
    sliced = SlicedInference.from_config(cfg, MustNotRun())
    with pytest.raises(ValueError, match=rf"^sliced inference would cut the 512 x 512 image into "
                                         rf"16641 tiles of 256 px \(TEST.SLICE.SIZE 256, "
                                         rf"TEST.SLICE.OVERLAP 0.99\); at most {MAX_TILES} are "
                                         rf"run per image: raise TEST.SLICE.SIZE or lower "
                                         rf"TEST.SLICE.OVERLAP$"):
        sliced.detect(np.zeros((512, 512, 3), np.uint8))


@pytest.mark.parametrize("kw", [{"overlap": 1.0}, {"overlap": -0.1}, {"size": 0}, {"batch": 0}])
def test_a_wrapper_built_by_hand_checks_its_settings(kw):
    args = dict(size=100, overlap=0.2, batch=3)
    args.update(kw)
    with pytest.raises(ValueError, match="TEST.SLICE: SIZE must be >= 1, OVERLAP in"):
        SlicedInference(BoxesAt(), [], size=args["size"], overlap=args["overlap"],
                        whole_image=False, batch_size=args["batch"], iou_thresh=0.5,
                        ios_thresh=0.6, max_detections=10)


def test_many_tiles_without_a_terminal_log_one_line_per_image(caplog):
    import logging

    sliced = _sliced(size=16, overlap=0.0, batch=64)  # 128 x 128: 8 x 8 = 64 tiles
    assert tile_count(128, 128, 16, 0.0) == 64 >= LOG_TILES
    with caplog.at_level(logging.INFO, logger="fewshot_det.engine.slicing"):
        sliced.detect(_image(128, 128, (10, 10, 20, 20)))
        sliced.detect(_image(40, 40))  # 9 tiles: no line
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["sliced inference: 64 tiles of 16 px for a 128 x 128 image"]


def test_objects_the_whole_image_pass_sees_large_enough_come_from_it_alone():
    # whole_from 160: a tile's uncut 170-px box (an enlarged view the whole pass also
    # sees, scored 0.95) is dropped though no whole-image box covers it; a 40-px one stays
    out = _merge([([0, 0, 170, 170], 0.95, 1, False, False),
                  ([300, 300, 340, 340], 0.7, 1, False, False),
                  ([400, 0, 600, 150], 0.5, 2, False, True)])
    assert sorted(out["boxes"].tolist()) == [[300, 300, 340, 340], [400, 0, 600, 150]]
    # without the whole-image pass the tiles keep every size
    out = _merge([([0, 0, 170, 170], 0.95, 1, False, False)], whole_from=float("inf"))
    assert out["boxes"].tolist() == [[0, 0, 170, 170]]


def test_the_size_bound_is_measured_in_the_whole_image_pass_input():
    # 400 x 400 image, test size 100: the whole pass shrinks 4x, so WHOLE_MIN_SIZE 10
    # (pixels of its input) routes objects of 40+ image pixels to it
    sliced = _sliced(size=100, overlap=0.25, whole_image=True)
    sliced.whole_min_size = 10.0
    assert sliced._whole_scale(400, 400) == pytest.approx(0.25)
    seen = {}
    real = slicing.merge_detections

    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **kw)

    with mock.patch.object(slicing, "merge_detections", spy):
        sliced.detect(_image(400, 400, (10, 10, 30, 30)))
    assert seen["whole_from"] == pytest.approx(40.0)
    sliced.whole_min_size = 48.0  # 192 image px, but no 100-px tile holds 80+ px whole
    with mock.patch.object(slicing, "merge_detections", spy):
        sliced.detect(_image(400, 400, (10, 10, 30, 30)))
    assert seen["whole_from"] == pytest.approx(80.0)


def test_whole_min_size_is_checked():
    cfg = get_cfg()
    cfg.merge_from_list(["TEST.SLICE.WHOLE_MIN_SIZE", "-1"])
    with pytest.raises(ValueError, match="TEST.SLICE.WHOLE_MIN_SIZE must be >= 0 pixels, got -1"):
        validate_cfg(cfg)
