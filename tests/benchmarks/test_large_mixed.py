"""benchmarks/large_mixed.py end to end on two tiny scenes and two iterations."""
import json
import os

import pytest
import yaml

from benchmark_scripts import load_benchmark

TINY = ["--classes", "circle", "cross", "--train-scenes", "2", "--test-scenes", "1",
        "--width", "512", "--height", "384", "--large-px", "80", "200", "--tile", "256",
        "--size", "256", "--iters", "2",
        "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
        "PRETRAIN.ITERS", "2", "PRETRAIN.BATCH_SIZE", "4"]


def _config(out, recipe):
    with open(os.path.join(out, recipe, "config.yaml")) as f:
        return yaml.safe_load(f)


def test_three_recipes_from_one_start_evaluated_whole_and_sliced(tmp_path):
    bench = load_benchmark("large_mixed")
    out = str(tmp_path / "bench")
    rows = bench.main(["--output", out] + TINY)
    assert set(rows) == {(r, m) for r in ("whole", "tile", "mixed") for m in ("whole", "sliced")}
    for r in rows.values():
        assert all(0 <= r[k] <= 1 or r[k] == -1 for k in ("AP50", "APs", "APm", "APl"))
        assert r["s_per_image"] > 0 and r["s_per_iter"] > 0
    start = os.path.join(out, "start", "model_start.pth")
    tiles = {}
    for recipe in ("whole", "tile", "mixed"):
        cfg = _config(out, recipe)
        assert cfg["MODEL"]["WEIGHTS"] == start and cfg["PRETRAIN"]["ITERS"] == 0
        assert cfg["INPUT"]["MIN_SIZE_TRAIN"] == [256] and cfg["SOLVER"]["MAX_ITER"] == 2
        crop = cfg["INPUT"]["TILE_CROP"]
        tiles[recipe] = (crop["ENABLED"], crop["WHOLE_IMAGE_PROB"])
    assert tiles == {"whole": (False, 0.0), "tile": (True, 0.0), "mixed": (True, 0.5)}
    with open(os.path.join(out, "scenes", "train", "classes.txt")) as f:
        assert f.read().split() == ["circle", "cross", "chain"]
    text = open(os.path.join(out, "large_mixed.md")).read()
    assert text.count("\n| ") == 7 and "| tiles | sliced + whole image |" in text
    assert set(json.load(open(os.path.join(out, "large_mixed.json")))) == {
        f"{r}/{m}" for r in ("whole", "tile", "mixed") for m in ("whole", "sliced")}
    # a second run reuses the scenes, the models and the evaluations
    final = os.path.join(out, "tile", "model_final.pth")
    stamps = [os.path.getmtime(p) for p in (start, final)]
    assert bench.main(["--output", out] + TINY) == rows
    assert [os.path.getmtime(p) for p in (start, final)] == stamps


def test_a_start_from_weights_of_other_classes_and_scenes_kept_apart(tmp_path):
    bench = load_benchmark("large_mixed")
    first = str(tmp_path / "first")
    bench.main(["--output", first, "--recipes", "whole"] + TINY)
    weights = os.path.join(first, "whole", "model_final.pth")  # circle, cross, chain
    out = str(tmp_path / "second")
    args = ["--output", out, "--recipes", "whole", "--weights", weights] + TINY
    args[args.index("cross")] = "square"
    rows = bench.main(args)
    assert set(rows) == {("whole", "whole"), ("whole", "sliced")}
    import torch

    before = torch.load(weights, weights_only=True)["model"]
    start = torch.load(os.path.join(out, "start", "model_start.pth"), weights_only=True)
    assert start["extra"]["thing_classes"] == ["circle", "square", "chain"]
    key = "roi_heads.box_predictor.cls_score.weight"  # rows: background, then the classes
    assert torch.equal(start["model"][key][[0, 1, 3]], before[key][[0, 1, 3]])
    assert not torch.equal(start["model"][key][2], before[key][2])  # square: new
    with open(os.path.join(out, "whole", "config.yaml")) as f:
        assert yaml.safe_load(f)["MODEL"]["WEIGHTS"] == os.path.join(out, "start",
                                                                     "model_start.pth")
    args[args.index("square")] = "ring"
    with pytest.raises(SystemExit, match="other parameters .*classes"):
        bench.main(args)
