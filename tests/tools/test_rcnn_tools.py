"""End to end: train_net -> --resume -> eval.py --config -> demo.py -> Predictor, on a tiny
Faster R-CNN and a VOC folder given only as a dataset spec."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from tiny_datasets import make_voc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(REPO, "configs", "quickstart", "faster_rcnn_R18_FPN_shapes.yaml")


def tiny_overrides(spec, out):
    return ["DATASETS.TRAIN", f"('{spec}',)", "DATASETS.TEST", f"('{spec}',)",
            "MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
            "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN",
            "96", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
            "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "1",
            "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LOG_PERIOD", "1", "TEST.EVAL_PERIOD", "0",
            "PRETRAIN.ITERS", "2", "PRETRAIN.BATCH_SIZE", "4", "PRETRAIN.SIZE", "32",
            "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out)]


def run(args):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rcnn")
    root = make_voc(tmp / "voc", {f"im{i}": (96, 80, [("dog", [5 + i, 8, 40 + i, 50], 0),
                                                       ("cat", [50, 30, 90, 75], 0)])
                                  for i in range(4)}, classes=["dog", "cat"])
    spec, out = f"voc:{root}:train", tmp / "out"
    run(["tools/train_net.py", "--config", QUICKSTART] + tiny_overrides(spec, out))
    return spec, out, tmp


def test_train_outputs(trained):
    _, out, _ = trained
    files = set(os.listdir(out))
    assert {"config.yaml", "log.txt", "metrics.jsonl", "last_checkpoint", "model_final.pth",
            "model_0000001.pth"} <= files
    metrics = json.load(open(out / "inference" / os.listdir(out / "inference")[0] /
                             "metrics.json"))
    assert {"AP", "AP50", "VOC07_AP50", "precision", "recall", "per_class"} <= set(metrics)
    assert "iter 4/4" in open(out / "log.txt").read()
    # the pictures of the final evaluation: PR curves per class, example detections
    inference = out / "inference" / os.listdir(out / "inference")[0]
    assert os.path.getsize(inference / "examples.png") > 0
    assert [f for f in os.listdir(inference / "pr_curves") if f.endswith(".png")]


def test_resume_matches_uninterrupted(trained):
    spec, out, tmp = trained
    cut = tmp / "cut"
    args = ["tools/train_net.py", "--config", QUICKSTART]
    run(args + tiny_overrides(spec, cut)[:-2] + ["OUTPUT_DIR", str(cut), "SOLVER.MAX_ITER",
                                                 "4", "DATASETS.TEST", "()"])
    os.remove(cut / "model_final.pth")
    with open(cut / "last_checkpoint", "w") as f:  # as if killed after iteration 2
        f.write("model_0000001.pth")
    run(args + ["--resume"] + tiny_overrides(spec, cut) + ["DATASETS.TEST", "()"])
    a = torch.load(out / "model_final.pth", weights_only=True)["model"]
    b = torch.load(cut / "model_final.pth", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_demo_and_predictor(trained):
    spec, out, tmp = trained
    ev = tmp / "ev"
    run(["tools/eval.py", "--config", QUICKSTART, "--weights", str(out / "model_final.pth")]
        + tiny_overrides(spec, ev))
    (sub,) = os.listdir(ev / "inference")
    assert os.path.isfile(ev / "inference" / sub / "predictions.json")
    assert os.path.isfile(ev / "inference" / sub / "examples.png")
    vis = tmp / "vis"
    img_dir = os.path.join(spec.split(":")[1], "JPEGImages")
    proc = run(["tools/demo.py", "--config", QUICKSTART, "--weights",
                str(out / "model_final.pth"), "--input", img_dir, "--output", str(vis),
                "--score-thresh", "0.0"] + tiny_overrides(spec, tmp / "d"))
    assert sorted(os.listdir(vis)) == [f"im{i}.jpg" for i in range(4)], proc.stdout

    from fewshot_det import Predictor, get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(QUICKSTART)
    cfg.merge_from_list(tiny_overrides(spec, tmp / "p") + ["MODEL.WEIGHTS",
                                                           str(out / "model_final.pth")])
    predictor = Predictor(cfg)
    assert predictor.class_names == ["dog", "cat"]  # read from the checkpoint
    image = cv2.imread(os.path.join(img_dir, "im0.jpg"))
    pred = predictor(image)
    assert pred["boxes"].shape[1] == 4 and len(pred["class_names"]) == len(pred["labels"])
    if len(pred["boxes"]):
        assert float(pred["boxes"][:, 2].max()) <= 96 and float(pred["boxes"][:, 3].max()) <= 80
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor(np.zeros((5, 5), np.uint8))
