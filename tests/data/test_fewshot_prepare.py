import os

from fewshot_det.data.fewshot import (
    build_fewshot_dataset,
    fewshot_records,
    prepare_fewshot_splits,
    split_file_path,
)


def _records():
    """Six images; image i holds one box of class 1 + (i % 2) and one of class 3 if i > 3."""
    out = []
    for i in range(6):
        labels = [1 + i % 2] + ([3] if i > 3 else [])
        out.append({"file_name": f"/d/im{i}.jpg", "image_id": f"im{i}", "height": 20, "width": 20,
                    "annotations": [{"bbox": [1.0, 1.0, 9.0, 9.0 + k], "category_id": c,
                                     "iscrowd": 0, "difficult": 0} for k, c in enumerate(labels)]})
    return out


META = {"thing_classes": ["a", "b", "c"], "evaluator_type": "voc"}


def test_prepare_writes_every_seed_shot_and_class(tmp_path):
    rows = prepare_fewshot_splits(_records(), META, [1, 2], [0, 3], str(tmp_path))
    assert len(rows) == 2 * 2 * 3
    assert {(r["seed"], r["shots"], r["class"]) for r in rows if r["instances"] == r["shots"]} == {
        (s, k, c) for s in (0, 3) for k in (1, 2) for c in "abc"}
    assert all(os.path.isfile(r["path"]) for r in rows)
    assert rows[0]["path"] == split_file_path(str(tmp_path), "voc", "a", 1, 0)


def test_fewshot_records_samples_writes_then_reads(tmp_path):
    records = _records()
    sampled = build_fewshot_dataset(records, META["thing_classes"], 2, seed=1)
    assert fewshot_records(records, META, 2, 1) == sampled  # no split dir: just sample
    assert fewshot_records(records, META, 2, 1, split_dir=str(tmp_path)) == sampled
    path = split_file_path(str(tmp_path), "voc", "c", 2, 1)
    assert os.path.isfile(path)
    # files present: they win over sampling (e.g. TFA's published splits)
    with open(path, "w") as f:
        f.write("/d/im5.jpg\n")
    got = fewshot_records(records, META, 2, 1, split_dir=str(tmp_path))
    assert [(r["image_id"], a["category_id"]) for r in got for a in r["annotations"]
            if a["category_id"] == 3] == [("im5", 3)]
