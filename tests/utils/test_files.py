"""fewshot_det.utils.files: a write replaces the whole file or leaves the old one."""
import os

import pytest

from fewshot_det.utils.files import atomic_write_bytes, atomic_write_text


def test_replaces_the_whole_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("an older and much longer content\n")
    atomic_write_text(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_creates_the_folder_and_writes_bytes(tmp_path):
    path = tmp_path / "a" / "b" / "blob.bin"
    atomic_write_bytes(str(path), lambda f: f.write(b"\x00\x01\x02"))
    assert path.read_bytes() == b"\x00\x01\x02"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_failure_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")

    def half_then_fail(f):
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_bytes(str(path), half_then_fail)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_failure_without_an_old_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(str(tmp_path / "x.bin"), lambda f: (_ for _ in ()).throw(
            KeyboardInterrupt()))
    assert os.listdir(tmp_path) == []


def test_the_checkpointer_writes_through_the_same_helper():
    from fewshot_det.engine import checkpoint

    assert checkpoint.atomic_write_bytes is atomic_write_bytes
