"""The tools run a YOLOGrid config with no special flags: train_net (2 iterations, EMA),
eval.py --config/--weights on its checkpoint, demo.py on its checkpoint."""
import glob
import json
import math
import os
import subprocess
import sys

import pytest
from tiny_datasets import make_voc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "quickstart", "yolo_R18_shapes.yaml")
TINY = ["INPUT.FIXED_SIZE", "64", "MODEL.YOLO.GRID_SIZE", "2", "MODEL.YOLO.HEAD_CONV_DIM", "16",
        "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
        "PRETRAIN.ITERS", "2", "PRETRAIN.BATCH_SIZE", "4"]


def run_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)  # tiny jobs: one thread
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-iteration YOLOGrid training run on a tiny VOC tree (with EMA)."""
    root = make_voc(tmp_path_factory.mktemp("voc"), {
        f"im{i}": (80, 60, [("dog", [5 + i, 8, 40, 50], 0), ("cat", [45, 20, 75, 55], 0)]
                   if i % 3 else []) for i in range(6)}, classes=["cat", "dog"])
    spec = f"voc:{root}:train"
    out = str(tmp_path_factory.mktemp("out"))
    run_tool("tools/train_net.py", "--config", CONFIG, *TINY,
             "DATASETS.TRAIN", f"('{spec}',)", "DATASETS.TEST", f"('{spec}',)",
             "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
             "SOLVER.LOG_PERIOD", "1", "SOLVER.EMA.WARMUP", "1", "OUTPUT_DIR", out)
    return {"root": root, "spec": spec, "out": out}


def test_train_net_writes_losses_checkpoint_and_both_evaluations(trained):
    out = trained["out"]
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    losses = [ln for ln in lines if "loss_regression" in ln]
    assert [ln["iteration"] for ln in losses] == [1, 2]
    for ln in losses:
        for key in ("loss_class", "loss_no_object", "loss_contain_conf", "loss_regression"):
            assert math.isfinite(ln[key]), (key, ln)
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    for tag in ("inference", "inference_ema"):
        metrics = glob.glob(os.path.join(out, tag, "*", "metrics.json"))
        assert len(metrics) == 1, tag
        assert "AP50" in json.load(open(metrics[0]))


def test_eval_checkpoint_mode(trained):
    out = os.path.join(trained["out"], "eval")
    run_tool("tools/eval.py", "--config", CONFIG,
             "--weights", os.path.join(trained["out"], "model_final.pth"), *TINY,
             "DATASETS.TRAIN", f"('{trained['spec']}',)",
             "DATASETS.TEST", f"('{trained['spec']}',)", "OUTPUT_DIR", out)
    metrics = glob.glob(os.path.join(out, "inference", "*", "metrics.json"))
    predictions = glob.glob(os.path.join(out, "inference", "*", "predictions.json"))
    assert len(metrics) == 1 and len(predictions) == 1
    assert 0.0 <= json.load(open(metrics[0]))["AP50"] <= 1.0


def test_demo_draws_on_the_original_images(trained, tmp_path):
    proc = run_tool("tools/demo.py", "--config", CONFIG,
                    "--weights", os.path.join(trained["out"], "model_final.pth"),
                    "--input", os.path.join(trained["root"], "JPEGImages"),
                    "--output", str(tmp_path), "--score-thresh", "0.0", *TINY,
                    "DATASETS.TRAIN", f"('{trained['spec']}',)", "DATASETS.TEST", "()")
    drawn = sorted(os.listdir(tmp_path))
    assert drawn == [f"im{i}.jpg" for i in range(6)], proc.stdout
    import cv2

    assert cv2.imread(str(tmp_path / "im0.jpg")).shape == (60, 80, 3)


def test_finetune_fewshot_yolo_ft(trained, tmp_path):
    """YOLO-ft: the base checkpoint (cat, dog) fine-tuned with 'cat' declared novel — the
    same tool and config keys as the R-CNN models, no YOLO-specific flag."""
    out = tmp_path / "ft"
    proc = run_tool("tools/finetune_fewshot.py", "--config", CONFIG, "--shots", "1",
                    "--seeds", "0", *TINY,
                    "MODEL.WEIGHTS", os.path.join(trained["out"], "model_final.pth"),
                    "MODEL.BACKBONE.FREEZE_AT", "3", "FEWSHOT.NOVEL_CLASSES", "['cat']",
                    "DATASETS.TRAIN", f"('{trained['spec']}',)",
                    "DATASETS.TEST", f"('{trained['spec']}',)", "SOLVER.EMA.ENABLED", "False",
                    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
                    "SOLVER.WARMUP_ITERS", "1", "OUTPUT_DIR", str(out))
    assert "nAP50" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shots"] == 1 and summary["seeds"] == [0]
    assert len(summary["metrics"]["nAP50"]["values"]) == 1
    import torch

    base = torch.load(os.path.join(trained["out"], "model_final.pth"), weights_only=True)
    final = torch.load(out / "seed0" / "model_final.pth", weights_only=True)
    assert final["extra"]["thing_classes"] == ["cat", "dog"]
    for k, v in base["model"].items():  # FREEZE_AT 3: stem, layer1, layer2 untouched
        if k.startswith(("backbone.body.conv1.", "backbone.body.layer1.",
                         "backbone.body.layer2.")) and "num_batches" not in k:
            assert torch.equal(final["model"][k], v), k
