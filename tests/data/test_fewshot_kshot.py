import random
import warnings

import pytest

from fewshot_det.data.fewshot.class_splits import SYNTHETIC_CLASSES
from fewshot_det.data.fewshot.kshot import (
    FewShotWarning,
    build_fewshot_dataset,
    merge_class_splits,
    sample_class_shots,
    sample_kshot,
)
from fewshot_det.data.readers import load_voc
from fewshot_det.data.synthetic import generate_synthetic_dataset

SHOTS = (1, 2, 3, 5)


def _record(image_id, labels, difficult=(), crowd=()):
    """A record whose i-th box has label labels[i] (difficult/crowd by index)."""
    anns = [{"bbox": [i, i, i + 10.0, i + 10.0], "category_id": c, "iscrowd": int(i in crowd),
             "difficult": int(i in difficult)} for i, c in enumerate(labels)]
    return {"file_name": f"/data/{image_id}.jpg", "image_id": image_id, "height": 50,
            "width": 50, "annotations": anns}


def _count(per_class_records, label=None):
    return sum(1 for r in per_class_records for a in r["annotations"]
               if label is None or a["category_id"] == label)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    generate_synthetic_dataset(root, num_train=60, num_test=0, image_size=96, seed=3)
    records, classes = load_voc(root, "train", check_images=False)
    assert classes == list(SYNTHETIC_CLASSES)
    return records, classes


def test_exactly_k_per_class_on_synthetic(shapes):
    records, classes = shapes
    for k in SHOTS:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FewShotWarning)  # enough data: no warning at all
            per_class = sample_kshot(records, classes, k, seed=0)
        assert list(per_class) == classes
        for label, name in enumerate(classes, start=1):
            recs = per_class[name]
            # only that class's boxes, exactly K of them, each image once
            assert _count(recs) == _count(recs, label) == k
            assert len({r["image_id"] for r in recs}) == len(recs)


def test_deterministic_per_seed_and_different_across_seeds(shapes):
    records, classes = shapes
    ids = lambda d: {c: [r["image_id"] for r in rs] for c, rs in d.items()}  # noqa: E731
    a = ids(sample_kshot(records, classes, 3, seed=1))
    assert a == ids(sample_kshot(records, classes, 3, seed=1))
    assert a != ids(sample_kshot(records, classes, 3, seed=2))
    # independent of record order and of which other classes are sampled
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    assert a == ids(sample_kshot(shuffled, classes, 3, seed=1))
    assert ids(sample_kshot(records, classes, 3, seed=1, classes=["ring"]))["ring"] == a["ring"]


def test_image_is_taken_only_if_it_keeps_count_at_most_k():
    # image "a" holds 2 instances, "b" holds 3: with K=3 only {"b"} works, for any seed
    records = [_record("a", [1, 1]), _record("b", [1, 1, 1]), _record("c", [2])]
    for seed in range(5):
        recs = sample_class_shots(records, 1, "x", 3, seed)
        assert [r["image_id"] for r in recs] == ["b"] and _count(recs) == 3


def test_fewer_than_k_warns_with_count():
    records = [_record("a", [1, 2]), _record("b", [1])]
    with pytest.warns(FewShotWarning, match=r"class 'x' has 2 of the 5 requested shots "
                                             r"\(2 usable instances in 2 images"):
        recs = sample_class_shots(records, 1, "x", 5, seed=0)
    assert sorted(r["image_id"] for r in recs) == ["a", "b"] and _count(recs, 1) == 2


def test_partial_image_when_every_image_has_more_than_k():
    records = [_record(f"i{j}", [1, 1, 1, 2]) for j in range(4)]
    with pytest.warns(FewShotWarning, match=r"contributes 2 of its 3 instances"):
        recs = sample_class_shots(records, 1, "x", 2, seed=0)
    assert len(recs) == 1 and _count(recs) == 2
    # the first instances of the image, so a VOC file (image list) can reproduce the split
    assert [a["bbox"][0] for a in recs[0]["annotations"]] == [0, 1]
    with pytest.warns(FewShotWarning, match=r"has 0 of the 2"):
        assert sample_class_shots(records, 1, "x", 2, seed=0, allow_partial=False) == []


def test_difficult_and_crowd_are_neither_counted_nor_sampled():
    # "a" has 1 clean + 1 difficult + 1 crowd box of class 1: it counts as 1 shot
    records = [_record("a", [1, 1, 1], difficult=(1,), crowd=(2,)), _record("b", [1, 1])]
    recs = sample_class_shots(records, 1, "x", 1, seed=0)
    assert [r["image_id"] for r in recs] == ["a"]
    assert [a["bbox"][0] for a in recs[0]["annotations"]] == [0]
    with pytest.warns(FewShotWarning, match=r"has 0 of the 1.*0 usable instances in 0 images"):
        sample_class_shots([_record("d", [1], difficult=(0,))], 1, "x", 1, seed=0)


def test_merge_is_the_union_per_image():
    records = [_record("a", [1, 2]), _record("b", [2, 2])]
    per_class = sample_kshot(records, ["one", "two"], 1, seed=0)
    assert [r["image_id"] for r in per_class["two"]] == ["a"]
    merged = merge_class_splits(per_class)
    assert len(merged) == 1 and [a["category_id"] for a in merged[0]["annotations"]] == [1, 2]
    assert build_fewshot_dataset(records, ["one", "two"], 1, seed=0) == merged
    assert records[0]["annotations"][0]["category_id"] == 1  # inputs untouched


def test_bccd_exactly_k_per_class(bccd_root):
    records, classes = load_voc(bccd_root, "trainval", check_images=False)
    assert classes == ["Platelets", "RBC", "WBC"]
    for k in (1, 2, 3, 5, 10):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            per_class = sample_kshot(records, classes, k, seed=0)
        for label, name in enumerate(classes, start=1):
            assert _count(per_class[name]) == _count(per_class[name], label) == k
        # every BCCD image holds >= 3 red cells: 1 and 2 shots need a partial image
        partial = [str(w.message) for w in caught if "unlabelled" in str(w.message)]
        assert len(partial) == (1 if k < 3 else 0)
        assert all("'RBC'" in msg for msg in partial)
