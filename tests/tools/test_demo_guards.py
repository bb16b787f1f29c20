"""tools/demo.py never replaces an input image, replaces other files in --output only with
--overwrite, and skips unreadable images of a folder with a counted warning; every refusal
is one ``error:`` line and exit code 2, before the model is loaded."""
import os

import cv2
import numpy as np
import pytest

from tool_fixtures import load_tool, run_main, tiny_rcnn_files


@pytest.fixture(scope="module")
def tool():
    return load_tool("demo")


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setattr("fewshot_det.engine.defaults.setup_logging", lambda *a, **k: None)
    return tiny_rcnn_files(str(tmp_path))


def _photos(folder, n=3):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(os.path.join(folder, f"im{i}.jpg"))
        cv2.imwrite(paths[-1], rng.integers(0, 255, (60 + 10 * i, 90, 3), np.uint8))
    return paths


def _contents(paths):
    return [open(p, "rb").read() for p in paths]


def _args(files, source, output, *more):
    cfg, weights = files
    return ["--config", cfg, "--weights", weights, "--input", source, "--output", output,
            "--score-thresh", "0.0", *more]


def test_output_in_the_input_folder_is_refused(tool, files, tmp_path, capsys):
    photos = _photos(str(tmp_path / "photos"))
    before = _contents(photos)
    for source in (tmp_path / "photos", photos[1]):  # the folder, or one image of it
        rc, _, errors, _ = run_main(tool, _args(files, source, tmp_path / "photos",
                                                "--overwrite"), capsys)
        assert rc == 2 and len(errors) == 1 and "would replace an input image" in errors[0]
    assert _contents(photos) == before


def test_existing_files_in_output_are_replaced_only_with_overwrite(tool, files, tmp_path,
                                                                   capsys):
    photos = _photos(str(tmp_path / "photos"))
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "im1.jpg").write_bytes(b"someone else's file")
    rc, _, errors, _ = run_main(tool, _args(files, tmp_path / "photos", vis), capsys)
    assert rc == 2 and errors == [f"error: --output {vis} already holds {vis / 'im1.jpg'} (1 of "
                                  f"3 drawings would replace existing files): give --overwrite "
                                  f"to replace them, or choose another folder"]
    assert os.listdir(vis) == ["im1.jpg"]
    rc, out, errors, _ = run_main(tool, _args(files, tmp_path / "photos", vis, "--overwrite"),
                                  capsys)
    assert rc == 0 and sorted(os.listdir(vis)) == ["im0.jpg", "im1.jpg", "im2.jpg"], errors
    assert cv2.imread(str(vis / "im1.jpg")).shape == cv2.imread(photos[1]).shape


def test_unreadable_images_of_a_folder_are_skipped_and_counted(tool, files, tmp_path, capsys):
    photos = _photos(str(tmp_path / "photos"))
    data = open(photos[0], "rb").read()
    open(photos[0], "wb").write(data[:len(data) // 2])  # truncated
    with open(photos[2], "wb") as f:
        f.write(b"not an image")
    vis = tmp_path / "vis"
    rc, out, errors, err = run_main(tool, _args(files, tmp_path / "photos", vis), capsys)
    assert rc == 0 and errors == [] and os.listdir(vis) == ["im1.jpg"]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 2 of 3 images could not be read and were skipped: im0.jpg "
                        "(truncated or corrupt (JPEG data ends before the end-of-image marker)), "
                        "im2.jpg (not an image, or corrupt)"]
    rc, _, errors, _ = run_main(tool, _args(files, photos[0], tmp_path / "vis2"), capsys)
    assert rc == 2 and errors[0].startswith(f"error: --input {photos[0]}: no image could be "
                                            f"read; {photos[0]}: truncated or corrupt")


def test_output_that_is_a_file_or_missing_input(tool, files, tmp_path, capsys):
    _photos(str(tmp_path / "photos"))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    rc, _, errors, _ = run_main(tool, _args(files, tmp_path / "photos", a_file), capsys)
    assert rc == 2 and errors == [f"error: --output {a_file} is a file; give a folder for the "
                                  f"drawn images"]
    rc, _, errors, _ = run_main(tool, _args(files, tmp_path / "nope", tmp_path / "v"), capsys)
    assert rc == 2 and errors == [f"error: --input {tmp_path / 'nope'}: no such file or folder"]
