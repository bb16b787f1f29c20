import json
import os
import shutil

import pytest

from fewshot_det.data.fewshot.kshot import FewShotWarning, merge_class_splits, sample_kshot
from fewshot_det.data.fewshot.tfa_files import (
    find_split_file,
    load_class_splits,
    load_fewshot_dataset,
    read_coco_split,
    read_voc_split,
    records_from_voc_split,
    split_file_name,
    write_class_splits,
    write_coco_split,
)
from fewshot_det.data.readers import load_coco_json, load_voc
from fewshot_det.data.synthetic import generate_synthetic_dataset

CORE = ("file_name", "image_id", "height", "width")


def _core(per_class):
    """Records reduced to the fields every split format keeps (boxes rounded for XYWH)."""
    return {
        c: [{**{k: r[k] for k in CORE}, "annotations": [
            (a["category_id"], [round(v, 6) for v in a["bbox"]], a["iscrowd"])
            for a in r["annotations"]]}
            for r in recs]
        for c, recs in per_class.items()
    }


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    generate_synthetic_dataset(root, num_train=40, num_test=0, image_size=96, seed=5)
    records, classes = load_voc(root, "train", check_images=False)
    meta = {"thing_classes": classes, "evaluator_type": "voc",
            "thing_dataset_id_to_contiguous_id": {i: i for i in range(1, len(classes) + 1)}}
    return root, records, meta


def test_tfa_file_names(tmp_path):
    assert split_file_name("voc", "bird", 5) == "box_5shot_bird_train.txt"
    assert split_file_name("coco", "dining table", 10) == \
        "full_box_10shot_dining table_trainval.json"
    with pytest.raises(ValueError, match="'yolo'"):
        split_file_name("yolo", "bird", 5)


@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_round_trip(shapes, tmp_path, fmt):
    _, records, meta = shapes
    per_class = sample_kshot(records, meta["thing_classes"], 3, seed=4)
    paths = write_class_splits(per_class, str(tmp_path), 3, 4, fmt, meta)
    suffix = "_train.txt" if fmt == "voc" else "_trainval.json"
    assert paths[0] == os.path.join(str(tmp_path), "seed4", f"{'full_' if fmt == 'coco' else ''}"
                                    f"box_3shot_circle{suffix}")
    back = load_class_splits(str(tmp_path), records, meta, 3, 4, fmt=fmt)
    assert _core(back) == _core(per_class)
    assert _core({"all": load_fewshot_dataset(str(tmp_path), records, meta, 3, 4)}) == \
        _core({"all": merge_class_splits(per_class)})


def test_voc_file_lists_image_paths(shapes, tmp_path):
    _, records, meta = shapes
    per_class = sample_kshot(records, meta["thing_classes"], 2, seed=0, classes=["ring"])
    (path,) = write_class_splits(per_class, str(tmp_path), 2, 0, "voc", meta)
    assert read_voc_split(path) == [r["file_name"] for r in per_class["ring"]]
    assert all(os.path.isabs(p) for p in read_voc_split(path))


def test_coco_file_format_and_sparse_ids(tmp_path):
    recs = [{"file_name": str(tmp_path / "img" / "a.jpg"), "image_id": 7, "height": 40, "width": 60,
             "annotations": [{"bbox": [1.5, 2.0, 11.5, 22.0], "category_id": 2, "iscrowd": 0,
                              "difficult": 0}]}]
    meta = {"thing_classes": ["cat", "dog"], "image_root": str(tmp_path / "img"),
            "thing_dataset_id_to_contiguous_id": {17: 1, 18: 2}}
    path = str(tmp_path / "s.json")
    write_coco_split(recs, path, meta)
    with open(path) as f:
        data = json.load(f)
    assert data["images"] == [{"id": 7, "file_name": "a.jpg", "height": 40, "width": 60}]
    assert data["annotations"] == [{"id": 1, "image_id": 7, "category_id": 18,
                                    "bbox": [1.5, 2.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0}]
    assert data["categories"] == [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]
    (back,) = read_coco_split(path, meta)
    assert back["file_name"] == recs[0]["file_name"]
    assert back["annotations"][0]["bbox"] == [1.5, 2.0, 11.5, 22.0]
    assert back["annotations"][0]["category_id"] == 2
    # the split file is a plain COCO json: the package's COCO reader agrees
    records, fields = load_coco_json(path, str(tmp_path / "img"), check_images=False)
    assert records[0]["annotations"][0]["bbox"] == back["annotations"][0]["bbox"]
    assert fields["thing_classes"] == ["cat", "dog"]


def test_tfa_seed0_layout_and_missing_files(shapes, tmp_path):
    _, records, meta = shapes
    per_class = sample_kshot(records, meta["thing_classes"], 1, seed=0)
    write_class_splits(per_class, str(tmp_path), 1, 0, "voc", meta)
    for name in os.listdir(tmp_path / "seed0"):  # TFA keeps seed 0 in the base folder
        shutil.move(str(tmp_path / "seed0" / name), str(tmp_path / name))
    os.rmdir(tmp_path / "seed0")
    assert find_split_file(str(tmp_path), "voc", "ring", 1, 0) == \
        str(tmp_path / "box_1shot_ring_train.txt")
    assert _core(load_class_splits(str(tmp_path), records, meta, 1, 0)) == _core(per_class)
    with pytest.raises(FileNotFoundError, match=r"'ring', 1 shots, seed 3.*seed3"):
        load_class_splits(str(tmp_path), records, meta, 1, 3, classes=["ring"])


def test_voc_split_matches_tfa_relative_paths_by_stem(shapes):
    _, records, _ = shapes
    rec = next(r for r in records if any(a["category_id"] == 7 for a in r["annotations"]))
    line = f"datasets/VOC2007/JPEGImages/{rec['image_id']}.jpg"
    (got,) = records_from_voc_split([line], records, 7, source="f.txt")
    assert got["image_id"] == rec["image_id"]
    assert got["annotations"] == [a for a in rec["annotations"] if a["category_id"] == 7]
    with pytest.raises(ValueError, match=r"f.txt: image 'x/nope.jpg' is not in the dataset"):
        records_from_voc_split(["x/nope.jpg"], records, 7, source="f.txt")


def test_voc_file_reproduces_partial_image(tmp_path):
    boxes = [{"bbox": [j, 0.0, j + 1.0, 1.0], "category_id": 1, "iscrowd": 0, "difficult": 0}
             for j in range(3)]
    recs = [{"file_name": f"/d/{i}.jpg", "image_id": str(i), "height": 9, "width": 9,
             "annotations": [dict(b) for b in boxes]} for i in range(3)]
    meta = {"thing_classes": ["x"]}
    with pytest.warns(FewShotWarning, match="unlabelled"):
        per_class = sample_kshot(recs, ["x"], 2, seed=0)
    write_class_splits(per_class, str(tmp_path), 2, 0, "voc", meta)
    assert _core(load_class_splits(str(tmp_path), recs, meta, 2, 0)) == _core(per_class)


@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_split_files_are_replaced_whole_never_left_partial(shapes, tmp_path, fmt, monkeypatch):
    _, records, meta = shapes
    per_class = sample_kshot(records, meta["thing_classes"], 2, seed=0, classes=["ring"])
    (path,) = write_class_splits(per_class, str(tmp_path), 2, 0, fmt, meta)
    before = open(path).read()
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temp file left
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # the process dies while writing again
    other = sample_kshot(records, meta["thing_classes"], 2, seed=1, classes=["ring"])
    with pytest.raises(OSError, match="disk full"):
        write_class_splits(other, str(tmp_path), 2, 0, fmt, meta)
    assert open(path).read() == before
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
