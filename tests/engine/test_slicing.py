"""Sliced inference (``engine.slicing``): tiles, boxes mapped back, merging across tiles."""
import numpy as np
import pytest
import torch
from torch import nn

from fewshot_det import get_cfg
from fewshot_det.engine.slicing import (LOG_TILES, MAX_TILES, SlicedInference, cut_by_tile,
                                        merge_detections, tile_count, tile_grid, tile_origins)


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
    out = merge_detections(boxes, torch.tensor([0.5, 0.9, 0.8]), torch.tensor([1, 1, 2]),
                           torch.zeros(3, dtype=torch.bool), iou_thresh=0.5, ios_thresh=0.6,
                           max_detections=10)
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert out["labels"].tolist() == [1, 2]
    assert cut_by_tile(torch.tensor([[0., 0, 5, 5], [50, 50, 60, 60]]), (0, 0, 100, 100),
                       200, 200).tolist() == [False, False]
    assert cut_by_tile(torch.tensor([[90., 0, 99, 5]]), (0, 0, 100, 100), 200, 200).tolist() \
        == [True]


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
