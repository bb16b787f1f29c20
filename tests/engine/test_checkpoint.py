"""Checkpointer: which checkpoint --resume picks when the pointer or a file is damaged."""
import logging
import os

import pytest
import torch

from fewshot_det.engine.checkpoint import STRAY_TEMP, Checkpointer, checkpoint_files
from fewshot_det.utils.files import atomic_write_bytes


def make_run(tmp_path, iterations=(2, 4, 6)):
    """A folder with periodic checkpoints after ``iterations``; the pointer names the last."""
    model = torch.nn.Linear(2, 2)
    ck = Checkpointer(str(tmp_path), {"model": model}, max_to_keep=0)
    for it in iterations:
        with torch.no_grad():
            model.weight.fill_(it)
        ck.save(f"model_{it - 1:07d}", it, periodic=True)
    return Checkpointer(str(tmp_path), {"model": torch.nn.Linear(2, 2)})


def test_checkpoint_files_are_newest_first(tmp_path):
    make_run(tmp_path, (2, 10, 6))
    (tmp_path / "model_final.pth").write_bytes(b"x")
    (tmp_path / "model_best.pth").write_bytes(b"x")
    assert [os.path.basename(p) for p in checkpoint_files(str(tmp_path))] == [
        "model_final.pth", "model_0000009.pth", "model_0000005.pth", "model_0000001.pth"]


def test_dangling_pointer_falls_back_to_newest_checkpoint(tmp_path, caplog):
    ck = make_run(tmp_path)
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    with caplog.at_level(logging.WARNING):
        path, ckpt = ck.read_latest()
    assert path == str(tmp_path / "model_0000005.pth") and ckpt["iteration"] == 6
    assert "model_0000099.pth, which does not exist" in caplog.text
    assert "resuming from the newest checkpoint " + path in caplog.text


def test_missing_pointer_falls_back_too(tmp_path):
    ck = make_run(tmp_path)
    os.remove(tmp_path / "last_checkpoint")
    assert ck.last_checkpoint() == str(tmp_path / "model_0000005.pth")


def test_truncated_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    ck = make_run(tmp_path)
    newest = tmp_path / "model_0000005.pth"
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        path, ckpt = ck.read_latest()
    assert path == str(tmp_path / "model_0000003.pth") and ckpt["iteration"] == 4
    assert f"checkpoint {newest} is unreadable" in caplog.text
    ck.restore(ckpt, path)
    assert torch.equal(ck.objects["model"].weight, torch.full((2, 2), 4.0))


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    ck = make_run(tmp_path, (2, 4))
    for name in ("model_0000001.pth", "model_0000003.pth"):
        (tmp_path / name).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=rf"^--resume: none of the 2 checkpoints in "
                                         rf"{tmp_path} is readable"):
        ck.read_latest()


def test_empty_folder_has_nothing_to_resume(tmp_path):
    assert Checkpointer(str(tmp_path / "new"), {}).read_latest() is None


def test_stray_temp_files_of_killed_saves_are_removed(tmp_path, caplog):
    ck = make_run(tmp_path, (2,))
    strays = [".model_0000009.pth.ab3_x9zq.tmp", ".last_checkpoint.k2j4h5g6.tmp"]
    for name in strays:
        (tmp_path / name).write_bytes(b"0" * 10)
    others = [".notes.ab3_x9zq.tmp", "model_0000009.pth.tmp", ".model_final.pth.short.tmp"]
    for name in others:
        (tmp_path / name).write_bytes(b"keep")
    with caplog.at_level(logging.INFO):
        assert ck.remove_stray_temp_files() == 20
    assert "removed 2 temp files of interrupted saves (20 bytes)" in caplog.text
    left = set(os.listdir(tmp_path))
    assert not left & set(strays) and set(others) <= left


def test_atomic_writes_use_unique_temp_names(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    for _ in range(2):
        atomic_write_bytes(str(tmp_path / "model_0000001.pth"), lambda f: f.write(b"x"))
    assert len(set(seen)) == 2
    assert all(STRAY_TEMP.fullmatch(n) for n in seen)  # what remove_stray_temp_files removes


def test_a_finished_runs_weights_file_resumes_as_finished_only(tmp_path):
    model = torch.nn.Linear(2, 2)
    objects = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    ck = Checkpointer(str(tmp_path), objects)
    ck.save("model_0000003", 4, periodic=True)
    with torch.no_grad():
        model.weight.fill_(7)
    ck.save_weights("model_final", 6, {"thing_classes": ["a"]})
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert sorted(final) == ["extra", "iteration", "model"]
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"
    fresh = Checkpointer(str(tmp_path), {"model": torch.nn.Linear(2, 2), "optimizer":
                                         objects["optimizer"]})
    path, ckpt = fresh.read_latest()
    assert path.endswith("model_final.pth") and not fresh.is_resumable(ckpt)
    fresh.restore(ckpt, path)  # the weights only
    assert torch.equal(fresh.objects["model"].weight, torch.full((2, 2), 7.0))
    path, ckpt = fresh.read_latest(skip_final=True)
    assert path.endswith("model_0000003.pth") and fresh.is_resumable(ckpt)
    with pytest.raises(ValueError, match=r"model_final\.pth lacks \['optimizer'\]"):
        fresh.read(str(tmp_path / "model_final.pth"))  # not a training checkpoint
