import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fewshot_det.data import get_dataset
from fewshot_det.data.fewshot.class_splits import SYNTHETIC_CLASSES, get_class_split
from fewshot_det.data.readers import load_coco_json, load_voc
from fewshot_det.data.synthetic import (
    ensure_synthetic_dataset,
    generate_synthetic_dataset,
    register_synthetic,
    render_image,
)

TINY = {"num_train": 20, "num_test": 3, "image_size": 96, "seed": 1}


def _tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    manifest = generate_synthetic_dataset(root, **TINY)
    return root, manifest


def test_same_seed_gives_identical_files(tiny, tmp_path):
    root, _ = tiny
    generate_synthetic_dataset(str(tmp_path / "again"), **TINY)
    first, again = _tree(root), _tree(str(tmp_path / "again"))
    assert sorted(first) == sorted(again) and len(first) == 2 * 23 + 8
    assert all(first[k] == again[k] for k in first)
    generate_synthetic_dataset(str(tmp_path / "other"), **{**TINY, "seed": 2})
    first_image = "JPEGImages/train_000000.jpg"
    assert _tree(str(tmp_path / "other"))[first_image] != first[first_image]


def test_helper_process_draws_the_same_files(tiny, tmp_path, monkeypatch):
    """Large splits are drawn by two processes; the files are those of one process."""
    from fewshot_det.data import synthetic

    monkeypatch.setattr(synthetic, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(synthetic.os, "cpu_count", lambda: 2)
    generate_synthetic_dataset(str(tmp_path / "two"), **TINY)
    first, two = _tree(tiny[0]), _tree(str(tmp_path / "two"))
    assert sorted(first) == sorted(two)
    assert [k for k in first if first[k] != two[k]] == []


def test_layout_classes_and_declared_split(tiny):
    root, manifest = tiny
    assert manifest["params"] == TINY and manifest["counts"]["train"]["images"] == 20
    with open(os.path.join(root, "classes.txt")) as f:
        assert f.read().split("\n")[:-1] == list(SYNTHETIC_CLASSES)
    with open(os.path.join(root, "fewshot_split.json")) as f:
        split = json.load(f)
    assert (split["base_classes"], split["novel_classes"]) == get_class_split("synthetic")
    with open(os.path.join(root, "ImageSets", "Main", "trainval.txt")) as f:
        assert f.read() == "".join(f"train_{i:06d}\n" for i in range(20))


def test_voc_tree_loads_with_voc_reader(tiny):
    root, manifest = tiny
    records, classes = load_voc(root, "train", box_policy="strict")  # checks images too
    assert classes == list(SYNTHETIC_CLASSES) and len(records) == 20
    counts = [len(r["annotations"]) for r in records]
    assert counts[19] == 0 and all(1 <= c <= 6 for c in counts[:19])  # every 20th is empty
    assert sum(counts) == manifest["counts"]["train"]["objects"]
    boxes = np.array([a["bbox"] for r in records for a in r["annotations"]])
    assert boxes.min() >= 1 and boxes.max() <= 96  # VOC: 1-based, inside the image


def test_coco_json_matches_voc_boxes(tiny):
    root, _ = tiny
    voc, _ = load_voc(root, "test", check_images=False)
    coco, fields = load_coco_json(os.path.join(root, "annotations", "instances_test.json"),
                                  os.path.join(root, "JPEGImages"), box_policy="strict")
    assert fields["thing_classes"] == list(SYNTHETIC_CLASSES)
    assert [r["file_name"] for r in coco] == [r["file_name"] for r in voc]
    for rv, rc in zip(voc, coco):
        labels = [a["category_id"] for a in rv["annotations"]]
        assert labels == [a["category_id"] for a in rc["annotations"]]
        for av, ac in zip(rv["annotations"], rc["annotations"]):
            # VOC: 1-based inclusive pixel indices; COCO: continuous [x, y, w, h]
            x1, y1, x2, y2 = av["bbox"]
            assert ac["bbox"] == [x1 - 1, y1 - 1, x2, y2]
            assert 0 < ac["area"] <= (x2 - x1 + 1) * (y2 - y1 + 1)


def test_render_varies_sizes_classes_and_stays_inside():
    names, sides = set(), []
    for i in range(30):
        img, objects = render_image(np.random.default_rng([0, i]), 256)
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        for o in objects:
            c1, r1, c2, r2 = o["box"]
            assert 0 <= c1 <= c2 < 256 and 0 <= r1 <= r2 < 256
            names.add(o["name"])
            sides.append(max(c2 - c1, r2 - r1) + 1)
    assert len(names) >= 10
    assert min(sides) < 30 and max(sides) > 90 and max(sides) <= 122


def test_ensure_is_idempotent_and_repairs(tmp_path):
    root = str(tmp_path / "shapes")
    small = {"num_train": 3, "num_test": 1, "image_size": 64}
    assert ensure_synthetic_dataset(root, **small) == root
    stamp = os.stat(os.path.join(root, "manifest.json")).st_mtime_ns
    ensure_synthetic_dataset(root, **small)
    assert os.stat(os.path.join(root, "manifest.json")).st_mtime_ns == stamp
    # interrupted generation (marker, no manifest): regenerated
    os.remove(os.path.join(root, "manifest.json"))
    open(os.path.join(root, ".generating"), "w").close()
    os.remove(os.path.join(root, "JPEGImages", "train_000002.jpg"))
    ensure_synthetic_dataset(root, **small)
    assert os.path.isfile(os.path.join(root, "JPEGImages", "train_000002.jpg"))
    # other parameters: regenerated, no stale files left
    ensure_synthetic_dataset(root, **{**small, "num_train": 2})
    assert sorted(os.listdir(os.path.join(root, "JPEGImages"))) == [
        "test_000000.jpg", "train_000000.jpg", "train_000001.jpg"]
    assert not [f for f in os.listdir(tmp_path) if f != "shapes"]  # no temp folders left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(ValueError, match=r"mine is not empty.*refusing"):
        ensure_synthetic_dataset(str(tmp_path / "mine"), **small)


def test_register_synthetic_generates_on_first_use(tmp_path):
    root = str(tmp_path / "gen")
    names = register_synthetic(root, prefix="tinyshapes", num_train=4, num_test=2, image_size=64)
    assert names == ["tinyshapes_train", "tinyshapes_train_coco", "tinyshapes_test",
                     "tinyshapes_test_coco", "tinyshapes_trainval"]
    assert register_synthetic(root, prefix="tinyshapes") == []  # already there: left alone
    assert not os.path.exists(root)  # nothing generated until loaded
    records, meta = get_dataset("tinyshapes_test")
    assert len(records) == 2 and meta.evaluator_type == "voc"
    assert (meta.base_classes, meta.novel_classes) == get_class_split("synthetic")
    records, meta = get_dataset("tinyshapes_train_coco")
    assert len(records) == 4 and meta.evaluator_type == "coco" and meta.novel_classes


def test_no_torch_import():
    code = ("import sys, fewshot_det.data.synthetic, fewshot_det.data.fewshot; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
