"""configs/EDP/tfa_torchvision_coco_10shot.yaml end to end: a (random) torchvision COCO
checkpoint file to a tiny EDP-like VOC set with person (a COCO class) and two new classes,
by imprinting only and by imprinting + fine-tuning on cached RoI features."""
import json
import os
import subprocess
import sys

import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from fewshot_fixtures import make_edp_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "EDP", "tfa_torchvision_coco_10shot.yaml")
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "160",
         "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160", "DATALOADER.NUM_WORKERS",
         "0", "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)", "SOLVER.IMS_PER_BATCH", "2",
         "SOLVER.WARMUP_ITERS", "1", "MODEL.DEVICE", "cpu"]


def _run(tmp_path, *args):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "finetune_fewshot.py"),
                           "--config", CONFIG, "--shots", "2", "--seeds", "0", *args],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_imprint_only_and_cached_finetune_from_a_torchvision_coco_file(tmp_path):
    make_edp_tree(str(tmp_path / "datasets" / "EDP"),
                  classes=["person", "insulator", "bird_nest"], scale=2)
    torch.manual_seed(0)
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    os.makedirs(tmp_path / "weights")
    torch.save(tv, tmp_path / "weights" / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")

    log = _run(tmp_path, "--support-only", *SMALL)
    assert "taken as COCO's classes (person, bicycle" in log
    assert "kept the checkpoint's rows of ['person']" in log
    assert "imprinted the classifier rows of ['insulator', 'bird_nest']" in log
    out = tmp_path / "output" / "EDP" / "tfa_torchvision_coco_10shot"
    assert json.loads((out / "summary.json").read_text())["mode"] == "support_only"
    imprinted = torch.load(out / "seed0" / "model_final.pth", weights_only=True)["model"]
    w = imprinted["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(w[1], tv["roi_heads.box_predictor.cls_score.weight"][1])  # person

    log = _run(tmp_path, *SMALL, "OUTPUT_DIR", str(tmp_path / "ft"))
    assert "fine-tuning on cached RoI features" in log and "RoI cache:" in log
    tuned = torch.load(tmp_path / "ft" / "seed0" / "model_final.pth", weights_only=True)["model"]
    body = "backbone.body.layer4.2.conv3.weight"
    assert torch.equal(tuned[body], imprinted[body])  # only the predictor trained
    assert not torch.equal(tuned["roi_heads.box_predictor.cls_score.weight"], w)
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["mode"] == "finetune" and "nAP50" in summary["metrics"]
