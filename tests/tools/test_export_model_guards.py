"""tools/export_model.py refuses, with one ``error:`` line and exit code 2 and before any
export work, an --output that would destroy an input or another file, or that cannot be
written; a truncated --check image; weights that are an export or do not fit the config."""
import os

import cv2
import numpy as np
import pytest

from tool_fixtures import load_tool, run_main, tiny_rcnn_files

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tool():
    return load_tool("export_model")


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setattr("fewshot_det.engine.defaults.setup_logging", lambda *a, **k: None)
    return tiny_rcnn_files(str(tmp_path))


def _no_export(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the export ran")

    monkeypatch.setattr("fewshot_det.export.export_model", fail)


def _args(cfg, weights, output, *more, fmt="torchscript"):
    return ["--config", cfg, "--weights", weights, "--format", fmt, "--output", output, *more]


def _photo(path, h=64, w=80):
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8))
    return str(path)


def test_output_equal_to_an_input_is_refused(tool, files, tmp_path, capsys, monkeypatch):
    cfg, weights = files
    _no_export(monkeypatch)
    before = open(weights, "rb").read()
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, weights), capsys)
    assert rc == 2 and len(errors) == 1, errors
    assert f"--output {weights} is the --weights file" in errors[0]
    assert open(weights, "rb").read() == before
    photo = _photo(tmp_path / "photo.jpg")
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, photo, "--check", photo,
                                            "--overwrite"), capsys)
    assert rc == 2 and "is the --check file" in errors[0]
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, cfg, "--overwrite"), capsys)
    assert rc == 2 and "is the --config file" in errors[0]


def test_an_existing_file_is_replaced_only_with_overwrite(tool, files, tmp_path, capsys,
                                                          monkeypatch):
    cfg, weights = files
    photo = _photo(tmp_path / "holiday.jpg")
    before = open(photo, "rb").read()
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, photo), capsys)
    assert rc == 2 and errors == [f"error: --output {photo} exists and is a file of unknown "
                                  f"content, not an export: choose another --output (or give "
                                  f"--overwrite to replace it)"]
    assert open(photo, "rb").read() == before

    out = str(tmp_path / "model.ts")
    rc, stdout, errors, _ = run_main(tool, _args(cfg, weights, out), capsys)
    assert rc == 0 and "the export matches PyTorch" in stdout, errors
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, out), capsys)
    assert rc == 2 and errors == [f"error: --output {out} exists (an earlier export): give "
                                  f"--overwrite to replace it, or choose another --output"]
    os.utime(out, (0, 0))
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, out, "--overwrite"), capsys)
    assert rc == 0 and os.path.getmtime(out) > 0, errors

    # the export given as --weights: named for what it is
    rc, _, errors, _ = run_main(tool, _args(cfg, out, str(tmp_path / "again.ts")), capsys)
    assert rc == 2 and f"MODEL.WEIGHTS {out} is a TorchScript model, not a checkpoint" \
        in errors[0]


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_an_unwritable_output_fails_before_the_export(tool, files, tmp_path, capsys,
                                                      monkeypatch, where):
    cfg, weights = files
    _no_export(monkeypatch)
    a_file = tmp_path / "some_file.txt"
    a_file.write_text("notes")
    output = a_file / "model.onnx" if where == "under_a_file" else tmp_path
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, output, fmt="onnx"), capsys)
    assert rc == 2 and len(errors) == 1
    expected = (f"--output: {a_file} is a file, not a folder" if where == "under_a_file"
                else f"--output: {tmp_path} is a folder")
    assert expected in errors[0], errors


def test_a_truncated_check_image_fails_before_the_export(tool, files, tmp_path, capsys,
                                                        monkeypatch):
    cfg, weights = files
    _no_export(monkeypatch)
    photo = _photo(tmp_path / "photo.jpg", 200, 300)
    data = open(photo, "rb").read()
    open(photo, "wb").write(data[:len(data) // 2])
    rc, _, errors, err = run_main(tool, _args(cfg, weights, tmp_path / "m.onnx", "--check",
                                              photo, fmt="onnx"), capsys)
    assert rc == 2 and errors == [f"error: --check: {photo} is truncated or corrupt (JPEG data "
                                  f"ends before the end-of-image marker)"]
    assert "ok" not in err and not (tmp_path / "m.onnx").exists()


def test_a_checkpoint_of_another_class_count_is_refused(tool, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fewshot_det.engine.defaults.setup_logging", lambda *a, **k: None)
    _no_export(monkeypatch)
    cfg, weights = tiny_rcnn_files(str(tmp_path), num_classes=12,
                                   classes=[f"c{i}" for i in range(12)])
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, tmp_path / "m.onnx", fmt="onnx"),
                                capsys)
    assert rc == 2 and len(errors) == 1
    assert ("its classifier has 13 rows (12 classes) but the config builds 3 classes "
            "(MODEL.ROI_HEADS.NUM_CLASSES 3)") in errors[0]


def test_a_tab_in_the_config_is_one_error_line(tool, files, tmp_path, capsys):
    _, weights = files
    cfg = tmp_path / "tab.yaml"
    cfg.write_text("MODEL:\n  DEVICE: cpu\n\tWEIGHTS: x\n")
    rc, _, errors, _ = run_main(tool, _args(cfg, weights, tmp_path / "m.ts"), capsys)
    assert rc == 2 and errors == [f"error: {cfg} line 3, column 1: YAML does not allow tabs for "
                                  f"indentation; use spaces (found character '\\t' that cannot "
                                  f"start any token)"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    rc, _, errors, _ = run_main(tool, _args(empty, weights, tmp_path / "m.ts"), capsys)
    assert rc == 2 and errors[0].startswith(f"error: {empty} is empty")
