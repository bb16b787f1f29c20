import logging
import os

import pytest

from fewshot_det.data import DataError, get_dataset
from fewshot_det.data.readers import load_coco_json, load_voc, load_yolo
from fewshot_det.data.specs import parse_spec
from tiny_datasets import make_coco, make_voc, make_yolo, voc_xml, write_image


def test_bccd_loads_and_drops_zero_area_boxes(bccd_root, caplog):
    with caplog.at_level(logging.WARNING):
        records, classes = load_voc(bccd_root, "trainval")
    assert classes == ["Platelets", "RBC", "WBC"]  # no classes.txt: sorted names
    assert len(records) == 292
    msg = " ".join(r.message for r in caplog.records)
    assert "2 degenerate box(es) dropped" in msg and "BloodImage_00338" in msg
    for r in records:
        for a in r["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            assert x2 > x1 and y2 > y1 and 1 <= a["category_id"] <= 3
    r0 = next(r for r in records if r["image_id"] == "BloodImage_00000")
    assert (r0["width"], r0["height"]) == (640, 480)
    assert r0["annotations"][0]["bbox"] == [260.0, 177.0, 491.0, 376.0]  # as in the XML


def test_bccd_all_splits_sum(bccd_root):
    n = {s: len(load_voc(bccd_root, s, check_images=False)[0]) for s in ("train", "val", "test")}
    assert n == {"train": 205, "val": 87, "test": 72}


def test_bccd_strict_rejects_zero_area(bccd_root):
    with pytest.raises(DataError, match="BloodImage_0033[8].jpg|BloodImage_00343.jpg"):
        load_voc(bccd_root, "trainval", check_images=False, box_policy="strict")


def test_voc_classes_txt_difficult_and_empty(tmp_path):
    root = make_voc(tmp_path / "voc", {
        "a": (64, 48, [("dog", [5, 6, 30, 40], 0), ("cat", [1, 1, 10, 10], 1)]),
        "b": (64, 48, []),
    }, classes=["dog", "cat"])
    records, classes = load_voc(root, "train")
    assert classes == ["dog", "cat"]
    a, b = records
    assert [x["category_id"] for x in a["annotations"]] == [1, 2]
    assert [x["difficult"] for x in a["annotations"]] == [0, 1]
    assert b["annotations"] == []  # negative sample kept


def test_voc_clip_and_warn(tmp_path, caplog):
    root = make_voc(tmp_path / "voc", {"a": (64, 48, [
        ("dog", [-5, 6, 80, 40], 0), ("dog", [10, 10, 10, 20], 0), ("dog", [70, 60, 90, 80], 0)])})
    with caplog.at_level(logging.WARNING):
        records, _ = load_voc(root, "train")
    assert [x["bbox"] for x in records[0]["annotations"]] == [[0.0, 6.0, 64.0, 40.0]]
    assert "1 box(es) clipped" in caplog.text and "2 degenerate" in caplog.text
    assert "a.jpg" in caplog.text


@pytest.mark.parametrize("case, match", [
    ("missing_image", r"image file not found: .*a\.jpg"),
    ("unknown_class", r"a\.xml: class 'horse' is not in the class list"),
    ("size_mismatch", r"a\.jpg: the annotation says 99x48"),
    ("truncated", r"truncated.*a\.jpg"),
    ("unreadable", r"cannot read image .*a\.jpg"),
    ("bad_xml", r"cannot parse VOC annotation .*a\.xml"),
])
def test_voc_bad_data_names_file(tmp_path, case, match):
    root = make_voc(tmp_path / "voc", {"a": (64, 48, [("dog", [5, 6, 30, 40], 0)])},
                    classes=["dog"])
    img = os.path.join(root, "JPEGImages", "a.jpg")
    xml = os.path.join(root, "Annotations", "a.xml")
    if case == "missing_image":
        os.remove(img)
    elif case == "unknown_class":
        open(xml, "w").write(voc_xml("a.jpg", 64, 48, [("horse", [5, 6, 30, 40], 0)]))
    elif case == "size_mismatch":
        open(xml, "w").write(voc_xml("a.jpg", 99, 48, [("dog", [5, 6, 30, 40], 0)]))
    elif case == "truncated":
        data = open(img, "rb").read()
        open(img, "wb").write(data[: len(data) // 2])
    elif case == "unreadable":
        open(img, "wb").write(b"not an image at all")
    elif case == "bad_xml":
        open(xml, "w").write("<annotation><object>")
    with pytest.raises(DataError, match=match):
        load_voc(root, "train")


def test_voc_missing_split_lists_present(tmp_path):
    root = make_voc(tmp_path / "voc", {"a": (64, 48, [])}, classes=["dog"])
    with pytest.raises(DataError, match=r"test\.txt.*\['train'\]"):
        load_voc(root, "test")


def _coco_tree(tmp_path):
    images = [{"id": 7, "file_name": "x.jpg", "width": 60, "height": 40},
              {"id": 9, "file_name": "y.jpg", "width": 50, "height": 50}]
    cats = [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}]
    anns = [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [1, 2, 10, 20], "area": 150.0,
             "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [5, 5, 30, 30], "area": 400.0,
             "iscrowd": 1}]
    return make_coco(tmp_path / "coco", images, cats, anns)


def test_coco_sparse_ids_area_crowd(tmp_path):
    path = _coco_tree(tmp_path)
    records, meta = load_coco_json(path)  # image folder guessed: coco/val/
    assert meta["thing_classes"] == ["car", "dog"]  # sorted by category id
    assert meta["thing_dataset_id_to_contiguous_id"] == {3: 1, 18: 2}
    x, y = records
    assert x["image_id"] == 7 and y["annotations"] == []
    dog, car = x["annotations"]
    assert dog == {"bbox": [1.0, 2.0, 11.0, 22.0], "category_id": 2, "iscrowd": 0,
                   "difficult": 0, "area": 150.0, "id": 1}
    assert car["iscrowd"] == 1 and car["bbox"] == [5.0, 5.0, 35.0, 35.0]  # clipped to 35<=60


def test_coco_bad_category_and_image(tmp_path):
    import json
    path = _coco_tree(tmp_path)
    data = json.load(open(path))
    data["annotations"][0]["category_id"] = 99
    json.dump(data, open(path, "w"))
    with pytest.raises(DataError, match=r"instances_val\.json: annotation id 1 .*99"):
        load_coco_json(path)
    data["annotations"][0]["category_id"] = 18
    data["annotations"][0]["image_id"] = 1234
    json.dump(data, open(path, "w"))
    with pytest.raises(DataError, match="unknown image_id 1234"):
        load_coco_json(path)


def test_coco_classes_txt_order(tmp_path):
    path = _coco_tree(tmp_path)
    open(os.path.join(os.path.dirname(path), "classes.txt"), "w").write("dog\ncar\n")
    _, meta = load_coco_json(path)
    assert meta["thing_classes"] == ["dog", "car"]
    assert meta["thing_dataset_id_to_contiguous_id"] == {18: 1, 3: 2}


@pytest.mark.parametrize("roboflow", [False, True])
def test_yolo_reader(tmp_path, roboflow):
    root = make_yolo(tmp_path / "y", "train", {
        "a": (100, 50, ["1 0.5 0.5 0.2 0.4", "0 0.1 0.1 0.4 0.4 0.4 0.2"]),  # box + segment
        "b": (100, 50, None),
    }, names=["cat", "dog"], roboflow=roboflow)
    records, classes = load_yolo(root, "train")
    assert classes == ["cat", "dog"]
    a, b = records
    boxes = [x["bbox"] for x in a["annotations"]]
    assert boxes[0] == pytest.approx([40.0, 15.0, 60.0, 35.0])
    assert boxes[1] == pytest.approx([10.0, 5.0, 40.0, 20.0])
    assert [x["category_id"] for x in a["annotations"]] == [2, 1]
    assert b["annotations"] == []


def test_yolo_class_out_of_range(tmp_path):
    root = make_yolo(tmp_path / "y", "train", {"a": (100, 50, ["5 0.5 0.5 0.2 0.4"])},
                     names=["cat", "dog"])
    with pytest.raises(DataError, match=r"a\.txt:1: class index 5"):
        load_yolo(root, "train")


def test_specs_parse():
    assert parse_spec("voc:/d/VOC2007:trainval") == ("voc", {"root": "/d/VOC2007",
                                                             "split": "trainval"})
    assert parse_spec("coco:/d/a.json:/d/imgs") == ("coco", {"json_file": "/d/a.json",
                                                            "image_root": "/d/imgs"})
    assert parse_spec("coco:/d/a.json")[1]["image_root"] is None
    assert parse_spec("yolo:rel/path:val") == ("yolo", {"root": "rel/path", "split": "val"})
    for bad in ("voc:/only/path", "coco:/d/a.txt", "tfrecord:/x:y"):
        with pytest.raises(ValueError, match="spec"):
            parse_spec(bad)


def test_get_dataset_from_specs(tmp_path):
    voc = make_voc(tmp_path / "voc", {"a": (64, 48, [("dog", [5, 6, 30, 40], 0)])})
    records, meta = get_dataset(f"voc:{voc}:train")
    assert meta.thing_classes == ["dog"] and meta.evaluator_type == "voc"
    records[0]["annotations"].clear()  # callers get copies; the cache stays intact
    assert get_dataset(f"voc:{voc}:train")[0][0]["annotations"]
    coco = _coco_tree(tmp_path)
    records, meta = get_dataset(f"coco:{coco}:{tmp_path / 'coco' / 'val'}")
    assert meta.evaluator_type == "coco" and len(records) == 2
    with pytest.raises(KeyError, match="not registered.*voc:PATH:SPLIT"):
        get_dataset("no_such_dataset")


def test_classes_txt_not_utf8_names_file_and_byte(tmp_path):
    root = make_voc(tmp_path / "voc", {"a": (64, 48, [("caf\u00e9", [5, 6, 30, 40], 0)])},
                    classes=["dog"])
    with open(os.path.join(root, "classes.txt"), "wb") as f:
        f.write("dog\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"classes\.txt: not UTF-8 text \(byte 7: b'\\xe9'\)"):
        load_voc(root, "train")


def test_yolo_border_rounding_is_not_clipped(tmp_path, caplog):
    root = make_yolo(tmp_path / "y", "train", {"a": (100, 50, ["0 0.8500004 0.5 0.3 0.4"])},
                     names=["cat"])
    with caplog.at_level(logging.WARNING):
        records, _ = load_yolo(root, "train")
    assert records[0]["annotations"][0]["bbox"] == pytest.approx([70.00004, 15.0, 100.0, 35.0])
    assert caplog.text == ""


def test_yolo_pixel_labels_are_named_in_the_warning(tmp_path, caplog):
    root = make_yolo(tmp_path / "y", "train", {"a": (100, 50, ["0 50 25 20 10"])},
                     names=["cat"])
    with caplog.at_level(logging.WARNING):
        load_yolo(root, "train")
    assert "1 label line(s) have coordinates > 1" in caplog.text
    assert "pixel coordinates? YOLO labels are normalised to 0..1" in caplog.text
    assert "a.txt:1" in caplog.text


def test_a_misspelt_class_without_classes_txt_is_a_counted_warning(tmp_path, caplog):
    from fewshot_det.data.readers.voc import voc_class_names

    images = {f"im{i}": (40, 40, [("insulator", [2, 2, 20, 20], 0)]) for i in range(6)}
    images["im6"] = (40, 40, [("insulater", [2, 2, 20, 20], 0), ("Damper", [5, 5, 9, 9], 0)])
    images["im7"] = (40, 40, [("damper", [5, 5, 9, 9], 0)])
    root = make_voc(tmp_path / "voc", images)
    with caplog.at_level("WARNING"):
        names = voc_class_names(root)
    assert names == ["Damper", "damper", "insulater", "insulator"]  # still loaded as given
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1  # Damper / damper: equally rare, no frequent look-alike
    assert ("class 'insulater' has 1 instance(s) (im6.xml) and looks like 'insulator' "
            "(6 instances)") in warned[0] and "classes.txt" in warned[0]


def test_names_that_differ_by_a_whole_word_are_not_flagged(tmp_path, caplog):
    from fewshot_det.data.readers.voc import voc_class_names

    # a public traffic-light set: two real classes, one 5x rarer than the other
    images = {f"im{i}": (40, 40, [("redstraight", [2, 2, 20, 20], 0)]) for i in range(10)}
    images["im10"] = (40, 40, [("greenstraight", [2, 2, 20, 20], 0)])
    images["im11"] = (40, 40, [("redstraigth", [2, 2, 20, 20], 0)])  # a real typo
    root = make_voc(tmp_path / "voc", images)
    with caplog.at_level("WARNING"):
        voc_class_names(root)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "class 'redstraigth'" in warned[0], warned


def test_typo_rule():
    from fewshot_det.data.records import edit_distance, is_typo_of

    assert edit_distance("insulater", "insulator") == 1
    assert edit_distance("greenstraight", "redstraight") == 3
    assert is_typo_of("insulater", "insulator") and is_typo_of("Bird_nest", "bird_nests")
    assert not is_typo_of("greenstraight", "redstraight")
    assert not is_typo_of("cat", "car")  # one letter of three: another word
    assert not is_typo_of("damper", "Damper")  # case alone is no typo: the same name


def test_distinct_classes_of_similar_names_are_not_flagged(tmp_path, caplog):
    from fewshot_det.data.readers.voc import voc_class_names

    images = {f"im{i}": (40, 40, [("cat", [2, 2, 20, 20], 0), ("car", [2, 2, 20, 20], 0)])
              for i in range(5)}
    root = make_voc(tmp_path / "voc", images)
    with caplog.at_level("WARNING"):
        assert voc_class_names(root) == ["car", "cat"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
