"""fewshot_det.data.support_file: the JSON file of taught classes (no torch needed)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fewshot_det.data import DataError
from fewshot_det.data.support_file import (SupportExample, load_support_images,
                                           read_support_file, write_support_file)
from tiny_datasets import write_image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def images(tmp_path):
    return [write_image(tmp_path / "photos" / f"p{i}.jpg", 120, 80, seed=i) for i in range(2)]


def _write(path, classes, **extra):
    data = {"format": "fewshot_det.supports", "version": 1, "classes": classes, **extra}
    path.write_text(json.dumps(data) if not isinstance(classes, str) else classes)
    return str(path)


def test_round_trip_with_paths_relative_to_the_file(tmp_path, images):
    classes = {"nest": [SupportExample(images[0], (10, 5, 50, 40)),
                        SupportExample(images[1], (0, 0, 120, 80))],
               "insulator": [SupportExample(images[1], (60.5, 10, 90, 70.25))]}
    path = str(tmp_path / "sets" / "supports.json")
    os.makedirs(os.path.dirname(path))
    write_support_file(path, classes)
    data = json.load(open(path))
    assert data["format"] == "fewshot_det.supports" and data["version"] == 1
    assert data["classes"]["nest"][0] == {"image": "../photos/p0.jpg", "box": [10, 5, 50, 40]}
    back = read_support_file(path)
    assert list(back) == ["nest", "insulator"]
    assert back["insulator"][0] == SupportExample(os.path.abspath(images[1]), (60.5, 10, 90, 70.25))
    loaded = load_support_images(back, image_format="RGB")
    image, box = loaded["nest"][0]
    assert image.shape == (80, 120, 3) and image.dtype == np.uint8 and box == [10, 5, 50, 40]


@pytest.mark.parametrize("box, message", [
    ([10, 10, 10, 40], r"class 'nest', example 2 of 2: box \[10, 10, 10, 40\] has no area"),
    ([10, 10, 130, 40],
     r"example 2 of 2: box \[10, 10, 130, 40\] is not inside its 120 x 80 image"),
    ([-1, 10, 30, 40], r"is not inside its 120 x 80 image"),
    ([1, 2, 3], r"example 2 of 2: a box is 4 numbers \[x1, y1, x2, y2\], got \[1, 2, 3\]"),
    ([1, 2, "3", 4], r"a box is 4 numbers"),
    ([1, 2, True, 4], r"a box is 4 numbers"),
    ("1 2 3 4", r"a box is 4 numbers"),
])
def test_bad_boxes_are_refused_naming_the_class_and_the_example(tmp_path, images, box, message):
    path = _write(tmp_path / "s.json", {"nest": [{"image": "photos/p0.jpg", "box": [1, 1, 9, 9]},
                                                 {"image": "photos/p1.jpg", "box": box}]})
    with pytest.raises(DataError, match=message):
        read_support_file(path)


def test_a_non_finite_box_is_refused(tmp_path, images):
    path = tmp_path / "s.json"
    path.write_text('{"format": "fewshot_det.supports", "version": 1, "classes": {"nest": '
                    '[{"image": "photos/p0.jpg", "box": [1, 1, NaN, 9]}]}}')
    with pytest.raises(DataError, match=r"class 'nest', example 1 of 1: box \[1, 1, nan, 9\] has "
                                        r"a non-finite coordinate"):
        read_support_file(str(path))


@pytest.mark.parametrize("content, message", [
    ('{"format": "something", "version": 1, "classes": {}}', "not a support file"),
    ('{"format": "fewshot_det.supports", "version": 7, "classes": {"a": []}}',
     "version 7 is not supported"),
    ('{"format": "fewshot_det.supports", "version": 1, "classes": {}}',
     '"classes" must be a non-empty object'),
    ('{"format": "fewshot_det.supports", "version": 1, "classes": {"a": []}}',
     "class 'a' needs a non-empty list of examples"),
    ('{"format": "fewshot_det.supports", "version": 1, "classes": {" ": [{"image": "x", '
     '"box": [0, 0, 1, 1]}]}}',
     "a class name must be a non-empty string"),
    ('{"format": "fewshot_det.supports", "version": 1, "classes": {"a": [{"image": '
     '"photos/p0.jpg", "box": [0, 0, 5, 5]}], "a": [{"image": "photos/p1.jpg", '
     '"box": [0, 0, 5, 5]}]}}',
     "key 'a' appears twice"),
    ('{"format": "fewshot_det.supports", "version": 1, "classes": {"a": [{"image": '
     '"photos/nope.jpg", "box": [0, 0, 5, 5]}]}}', r"class 'a', example 1 of 1: no such image"),
    ('{"format": "fewshot_det.supports", "version": 1, "classes": {"a": [{"img": "p.jpg", '
     '"box": [0, 0, 5, 5]}]}}', r"class 'a', example 1 of 1: expected \{"),
    ("[1, 2", "not a JSON file"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path, images, content, message):
    path = _write(tmp_path / "s.json", content)
    with pytest.raises(DataError, match=message) as err:
        read_support_file(path)
    assert path in str(err.value)


def test_a_missing_file_and_an_unwritable_class(tmp_path, images):
    with pytest.raises(DataError, match="support file not found"):
        read_support_file(str(tmp_path / "none.json"))
    with pytest.raises(DataError, match=r"class 'nest', example 1 of 1: box .* is not inside"):
        write_support_file(str(tmp_path / "s.json"),
                           {"nest": [SupportExample(images[0], (0, 0, 500, 10))]})
    assert not (tmp_path / "s.json").exists()


def test_a_cut_image_is_refused_when_loading_pixels(tmp_path, images):
    data = open(images[0], "rb").read()
    open(images[0], "wb").write(data[:len(data) // 2])
    with pytest.raises(DataError, match="class 'nest', example 1 of 1: .* is cut short"):
        load_support_images({"nest": [SupportExample(images[0], (1, 1, 9, 9))]})


def test_the_module_does_not_import_torch():
    code = ("import sys, fewshot_det.data.support_file; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
