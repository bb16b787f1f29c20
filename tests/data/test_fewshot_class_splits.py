import pytest

from fewshot_det.data.fewshot.class_splits import (
    COCO_CLASSES,
    COCO_NOVEL_CLASSES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_NOVEL_CLASSES,
    VOC_CLASSES,
    available_splits,
    get_class_split,
    resolve_class_split,
)


def test_voc_splits_are_tfa_lists():
    expected_novel = {
        "voc1": ["bird", "bus", "cow", "motorbike", "sofa"],
        "voc2": ["aeroplane", "bottle", "cow", "horse", "sofa"],
        "voc3": ["boat", "cat", "motorbike", "sheep", "sofa"],
    }
    for name, novel in expected_novel.items():
        base, got_novel = get_class_split(name)
        assert got_novel == novel
        assert len(base) == 15 and sorted(base + novel) == sorted(VOC_CLASSES)
    # TFA's PASCAL_VOC_BASE_CATEGORIES[1], in its order
    assert get_class_split("voc1")[0] == [
        "aeroplane", "bicycle", "boat", "bottle", "car", "cat", "chair", "diningtable", "dog",
        "horse", "person", "pottedplant", "sheep", "train", "tvmonitor",
    ]


def test_coco_split_is_60_base_20_novel_voc_classes():
    base, novel = get_class_split("coco")
    assert len(COCO_CLASSES) == len(set(COCO_CLASSES)) == 80
    assert len(base) == 60 and len(novel) == 20 and not set(base) & set(novel)
    assert novel == list(COCO_NOVEL_CLASSES)
    assert {"airplane", "motorcycle", "couch", "tv", "dining table", "potted plant"} <= set(novel)
    assert base[:3] == ["truck", "traffic light", "fire hydrant"]


def test_synthetic_split_and_aliases():
    base, novel = get_class_split("synthetic")
    assert novel == list(SYNTHETIC_NOVEL_CLASSES)
    assert sorted(base + novel) == sorted(SYNTHETIC_CLASSES)
    assert get_class_split("shapes") == (base, novel)
    assert get_class_split("VOC_Split2") == get_class_split("voc2")
    assert {"voc1", "voc2", "voc3", "coco", "synthetic"} <= set(available_splits())


def test_unknown_split_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"'voc4'.*voc1, voc2, voc3, coco, synthetic"):
        get_class_split("voc4")


def test_resolve_named_split_checks_dataset_classes():
    assert resolve_class_split(VOC_CLASSES, "voc3") == get_class_split("voc3")
    with pytest.raises(ValueError, match=r"'voc2'.*'aeroplane' \(did you mean 'airplane'\?\)"):
        resolve_class_split([c if c != "aeroplane" else "airplane" for c in VOC_CLASSES], "voc2")


def test_resolve_user_lists():
    classes = ["RBC", "WBC", "Platelets"]
    assert resolve_class_split(classes) == (classes, [])
    rest = ["RBC", "Platelets"]
    assert resolve_class_split(classes, "", novel_classes=["WBC"]) == (rest, ["WBC"])
    assert resolve_class_split(classes, None, base_classes=["WBC"]) == (["WBC"], rest)
    both = resolve_class_split(classes, base_classes=["Platelets", "RBC"], novel_classes=["WBC"])
    assert both == (["Platelets", "RBC"], ["WBC"])


@pytest.mark.parametrize("kwargs, pattern", [
    ({"novel_classes": ["wbc"]}, r"FEWSHOT.NOVEL_CLASSES: unknown class name\(s\) 'wbc' "
                                 r"\(did you mean 'WBC'\?\).*\['RBC', 'WBC', 'Platelets'\]"),
    ({"base_classes": ["RBC", "WBC"], "novel_classes": ["WBC", "Platelets"]}, r"\['WBC'\].*both"),
    ({"base_classes": ["RBC"], "novel_classes": ["WBC"]}, r"\['Platelets'\] are in neither"),
    ({"novel_classes": ["WBC", "WBC"]}, r"listed twice: \['WBC'\]"),
    ({"split_name": "voc1", "novel_classes": ["WBC"]}, r"one or the other"),
])
def test_resolve_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_class_split(["RBC", "WBC", "Platelets"], **kwargs)
