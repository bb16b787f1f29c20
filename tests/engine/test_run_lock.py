"""One run per OUTPUT_DIR: a second run is refused, a killed run's lock is taken over."""
import json
import logging
import os
import socket
import subprocess
import sys

import pytest
import torch

from fewshot_det import get_cfg
from fewshot_det.engine import train_loop
from fewshot_det.engine.run_lock import OutputDirInUse, RunLock

HOLDER = """
import sys
from fewshot_det.engine.run_lock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of ``tmp_path`` until the test ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def test_second_run_is_refused_naming_folder_and_owner(tmp_path, holder):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    host = socket.gethostname()
    with pytest.raises(OutputDirInUse, match=rf"^{tmp_path} is in use by another run \(pid "
                                             rf"{holder.pid} on {host}, started "):
        train_loop.train(cfg, torch.nn.Linear(1, 1))
    assert json.load(open(tmp_path / ".lock"))["pid"] == holder.pid  # still the owner's


def test_lock_is_released_when_the_owner_ends(tmp_path, holder):
    holder.stdin.close()
    holder.wait(timeout=30)
    assert not os.path.exists(tmp_path / ".lock")
    with RunLock(str(tmp_path)):
        assert json.load(open(tmp_path / ".lock"))["pid"] == os.getpid()
    assert not os.path.exists(tmp_path / ".lock")


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": "2000-01-01 00:00:00"}))
    with caplog.at_level(logging.WARNING):
        with RunLock(str(tmp_path)):
            assert json.load(open(tmp_path / ".lock"))["pid"] == os.getpid()
    assert f"taking over the stale lock {tmp_path / '.lock'} of pid {dead.pid}" in caplog.text
    assert not os.path.exists(tmp_path / ".lock")


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.example",
                                                "started": "2000-01-01 00:00:00"}))
    with pytest.raises(OutputDirInUse, match=r"pid 1 on elsewhere\.example"):
        RunLock(str(tmp_path)).acquire()


def test_lock_is_released_when_training_raises(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "_train", boom)
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train_loop.train(cfg, torch.nn.Linear(1, 1))
    assert not os.path.exists(tmp_path / ".lock")


def test_a_refused_run_writes_nothing_into_the_live_runs_folder(tmp_path, holder):
    import argparse

    from fewshot_det.engine.defaults import default_setup

    (tmp_path / "config.yaml").write_text("SOLVER:\n  BASE_LR: 0.02\n")
    (tmp_path / "log.txt").write_text("the live run's log\n")
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SOLVER.BASE_LR = 0.5
    cfg.freeze()
    with pytest.raises(OutputDirInUse, match="is in use by another run"):
        default_setup(cfg, argparse.Namespace(resume=False, overwrite=False, eval_only=False))
    assert (tmp_path / "config.yaml").read_text() == "SOLVER:\n  BASE_LR: 0.02\n"
    assert (tmp_path / "log.txt").read_text() == "the live run's log\n"


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with RunLock(str(tmp_path)):
        with RunLock(str(tmp_path)):  # the tool's setup, then train, in one process
            pass
        assert (tmp_path / ".lock").exists()  # the outer holder still owns the folder
    assert not (tmp_path / ".lock").exists()
