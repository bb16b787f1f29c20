"""Image files are checked by their content, whatever their extension says."""
import os

import cv2
import numpy as np
import pytest

from fewshot_det.data import DataError
from fewshot_det.data.image_format import sniff_format, truncation_problem
from fewshot_det.data.readers import load_voc
from tiny_datasets import make_voc


def _voc_with_image(tmp_path, data: bytes) -> str:
    root = make_voc(tmp_path / "voc", {"a": (64, 48, [("dog", [5, 6, 30, 40], 0)])},
                    classes=["dog"])
    open(os.path.join(root, "JPEGImages", "a.jpg"), "wb").write(data)
    return root


def _encoded(ext: str) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return cv2.imencode(ext, img)[1].tobytes()


def test_png_named_jpg_is_accepted(tmp_path):
    root = _voc_with_image(tmp_path, _encoded(".png"))
    records, _ = load_voc(root, "train")
    assert (records[0]["width"], records[0]["height"]) == (64, 48)


def test_jpeg_with_trailer_after_eoi_is_accepted(tmp_path):
    root = _voc_with_image(tmp_path, _encoded(".jpg") + bytes(range(100)))
    records, _ = load_voc(root, "train")
    assert len(records[0]["annotations"]) == 1


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
def test_file_cut_at_half_is_rejected_naming_it(tmp_path, ext):
    data = _encoded(ext)
    root = _voc_with_image(tmp_path, data[: len(data) // 2])
    with pytest.raises(DataError, match=r"truncated .*a\.jpg"):
        load_voc(root, "train")


def test_jpeg_with_exif_thumbnail_cut_after_it_is_rejected(tmp_path):
    # An APP1 segment carrying a whole thumbnail (with its own EOI) must not end the walk.
    thumb = _encoded(".jpg")
    app1 = b"\xff\xe1" + (len(thumb) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + thumb
    data = _encoded(".jpg")
    full = data[:2] + app1 + data[2:]
    path = tmp_path / "x.jpg"
    path.write_bytes(full)
    assert truncation_problem(str(path)) == ""
    path.write_bytes(full[: 2 + len(app1) + (len(data) - 2) // 2])
    assert "end-of-image" in truncation_problem(str(path))


@pytest.mark.parametrize("ext, name", [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"),
                                       (".tiff", "tiff"), (".webp", "webp")])
def test_sniff_format(ext, name):
    assert sniff_format(_encoded(ext)[:16]) == name
