"""tools/make_synthetic_dataset.py and tools/prepare_fewshot_splits.py end to end, each in
a subprocess as a user runs them."""
import json
import os
import subprocess
import sys

import pytest

from fewshot_det.data.fewshot.class_splits import SYNTHETIC_CLASSES
from fewshot_det.data.fewshot.tfa_files import load_class_splits
from fewshot_det.data.readers import load_voc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(tool, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "shapes"
    out = _run("make_synthetic_dataset.py", "--output", root, "--num-train", 30, "--num-test", 2,
               "--image-size", 96, "--seed", 7)
    assert f"voc:{root}:train" in out
    return str(root)


def test_voc_splits_for_a_spec(shapes, tmp_path):
    out = _run("prepare_fewshot_splits.py", "--dataset", f"voc:{shapes}:train", "--shots", 1, 2,
               "--seeds", 0, 1, "--output", tmp_path / "splits")
    assert "wrote 48 split files for 30 images" in out
    assert sorted(os.listdir(tmp_path / "splits")) == ["seed0", "seed1"]
    assert len(os.listdir(tmp_path / "splits" / "seed1")) == 2 * len(SYNTHETIC_CLASSES)
    records, classes = load_voc(shapes, "train", check_images=False)
    meta = {"thing_classes": classes, "evaluator_type": "voc"}
    for seed in (0, 1):
        per_class = load_class_splits(str(tmp_path / "splits"), records, meta, 2, seed)
        assert {c: sum(len(r["annotations"]) for r in recs) for c, recs in per_class.items()} == \
            dict.fromkeys(classes, 2)


def test_coco_splits_for_a_coco_spec(shapes, tmp_path):
    spec = f"coco:{shapes}/annotations/instances_train.json:{shapes}/JPEGImages"
    _run("prepare_fewshot_splits.py", "--dataset", spec, "--shots", 3, "--output", tmp_path,
         "--classes", "star", "ring", "--no-check-images")
    assert sorted(os.listdir(tmp_path / "seed0")) == [
        "full_box_3shot_ring_trainval.json", "full_box_3shot_star_trainval.json"]
    with open(tmp_path / "seed0" / "full_box_3shot_star_trainval.json") as f:
        data = json.load(f)
    star_id = SYNTHETIC_CLASSES.index("star") + 1
    assert [a["category_id"] for a in data["annotations"]] == [star_id] * 3
    for image in data["images"]:
        assert os.path.isfile(os.path.join(shapes, "JPEGImages", image["file_name"]))


def test_unknown_dataset_fails_clearly(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "prepare_fewshot_splits.py"),
         "--dataset", "no_such_set", "--output", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "no_such_set" in proc.stderr and "not registered" in proc.stderr
