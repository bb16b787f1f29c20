"""What the export refuses: an output that would destroy an input or fail after the work,
a checkpoint given to the runner, a truncated --check image; writes are all-or-nothing."""
import os

import cv2
import numpy as np
import pytest
import torch

from fewshot_det.export import ExportedPredictor, export_model
from fewshot_det.export.check import check_images, read_check_image
from fewshot_det.export.exporter import check_export_output, is_export
from test_export import _save_checkpoint, family_cfg, family_model

pytest.importorskip("onnxruntime")


def _export(tmp_path, name="model.ts", fmt="torchscript", cfg=None):
    path = str(tmp_path / name)
    export_model(family_model("rcnn"), cfg or family_cfg("rcnn"), path, fmt, ["a", "b", "c"])
    return path


def test_the_runner_says_a_checkpoint_is_not_an_export(tmp_path):
    ckpt = str(tmp_path / "model.pth")
    _save_checkpoint(family_model("rcnn"), ckpt, ["a", "b", "c"])
    with pytest.raises(ValueError, match=rf"^{ckpt} is a PyTorch checkpoint, not an exported "
                                         r"model: export it with tools/export_model.py"):
        ExportedPredictor(ckpt)
    legacy = str(tmp_path / "legacy.onnx")  # the extension does not decide
    torch.save({"w": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="is a pickle file .*not an exported model"):
        ExportedPredictor(legacy)
    text = tmp_path / "notes.onnx"
    text.write_text("hello")
    with pytest.raises(ValueError, match="is a file of unknown content, not an ONNX or "
                                         "TorchScript model"):
        ExportedPredictor(str(text))
    with pytest.raises(FileNotFoundError, match="exported model not found"):
        ExportedPredictor(str(tmp_path / "missing.onnx"))


def test_the_runner_checks_the_config_it_reads(tmp_path):
    cfg = family_cfg("rcnn")
    cfg.merge_from_list(["TEST.SLICE.OVERLAP", "1.0"])  # export_model takes cfg as it is
    path = _export(tmp_path, cfg=cfg)
    with pytest.raises(ValueError, match=r"TEST.SLICE.OVERLAP must be in \[0, 1\), got 1.0"):
        ExportedPredictor(path)


def test_a_failed_export_keeps_the_file_it_was_to_replace(tmp_path, monkeypatch):
    path = _export(tmp_path)
    before = open(path, "rb").read()

    def broken(*args, **kwargs):
        raise RuntimeError("tracer failed")

    monkeypatch.setattr(torch.jit, "trace", broken)
    with pytest.raises(RuntimeError, match="tracer failed"):
        _export(tmp_path)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["model.ts"]


def test_output_checks(tmp_path):
    weights = tmp_path / "model.pth"
    weights.write_bytes(b"x")
    inputs = {"--weights": [str(weights)], "--config": [], "--check": []}
    with pytest.raises(ValueError, match=rf"--output {weights} is the --weights file {weights}"):
        check_export_output(str(weights), inputs, overwrite=True)  # never, even so
    link = tmp_path / "link.pth"
    os.symlink(weights, link)
    with pytest.raises(ValueError, match="is the --weights file"):
        check_export_output(str(link), inputs, overwrite=True)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    with pytest.raises(ValueError, match=rf"^--output {photo} exists and is a file of unknown "
                                         r"content, not an export: choose another --output \(or "
                                         r"give --overwrite to replace it\)$"):
        check_export_output(str(photo), inputs, overwrite=False)
    check_export_output(str(photo), inputs, overwrite=True)
    earlier = _export(tmp_path, "earlier.onnx", "onnx")
    assert is_export(earlier) and not is_export(str(weights))
    with pytest.raises(ValueError, match=r"exists \(an earlier export\): give --overwrite"):
        check_export_output(earlier, inputs, overwrite=False)
    a_file = tmp_path / "some_file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=f"--output: {a_file} is a file, not a folder"):
        check_export_output(str(a_file / "model.onnx"), inputs, overwrite=False)
    with pytest.raises(ValueError, match=f"--output: {tmp_path} is a folder"):
        check_export_output(str(tmp_path), inputs, overwrite=True)


def test_a_truncated_check_image_is_an_error_naming_it(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    good = str(tmp_path / "good.jpg")
    cv2.imwrite(good, image)
    data = open(good, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    assert read_check_image(good, "BGR").shape == (64, 80, 3)
    with pytest.raises(ValueError, match=rf"^--check: {cut} is truncated or corrupt \(JPEG data "
                                         r"ends before the end-of-image marker\)"):
        read_check_image(str(cut), "BGR")
    with pytest.raises(ValueError, match="cut.jpg is truncated"):
        check_images(str(tmp_path), family_cfg("rcnn"))  # a folder holding it
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=f"--check: cannot read image {junk}"):
        read_check_image(str(junk), "BGR")
