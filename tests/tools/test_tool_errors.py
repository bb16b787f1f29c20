"""A user error (bad config key, unknown dataset, bad argument) ends a tool with one
``error: <message>`` line and exit code 2; ``--debug`` or ``FEWSHOT_DEBUG=1`` shows the
traceback."""
import os
import subprocess
import sys

import pytest

from tiny_datasets import make_voc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(REPO, "configs", "quickstart", "faster_rcnn_R18_FPN_shapes.yaml")


def _run(tool, *args, debug_env=False):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    env.pop("FEWSHOT_DEBUG", None)
    if debug_env:
        env["FEWSHOT_DEBUG"] = "1"
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_train_net_bad_key_is_one_error_line():
    proc = _run("train_net.py", "--config", QUICKSTART, "MODEL.NO_SUCH_KEY", "1")
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1 and "MODEL.NO_SUCH_KEY" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["env", "flag"])
def test_train_net_bad_key_traceback_on_debug(how):
    flag = ["--debug"] if how == "flag" else []
    proc = _run("train_net.py", "--config", QUICKSTART, *flag, "MODEL.NO_SUCH_KEY", "1",
                debug_env=how == "env")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "MODEL.NO_SUCH_KEY" in proc.stderr


def test_prepare_splits_unknown_dataset_is_one_error_line(tmp_path):
    proc = _run("prepare_fewshot_splits.py", "--dataset", "no_such_set", "--output", tmp_path)
    assert proc.returncode == 2
    assert len(_error_lines(proc)) == 1 and "no_such_set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prepare_splits_bad_shots_is_one_error_line(tmp_path):
    proc = _run("prepare_fewshot_splits.py", "--dataset", "no_such_set", "--output", tmp_path,
                "--shots", 0)
    assert proc.returncode == 2 and _error_lines(proc) == ["error: --shots must all be >= 1, "
                                                           "got [0]"]


def test_demo_missing_config_is_one_error_line(tmp_path):
    proc = _run("demo.py", "--config", tmp_path / "nope.yaml", "--weights", tmp_path / "w.pth",
                "--input", tmp_path, "--output", tmp_path / "vis")
    assert proc.returncode == 2, proc.stderr
    assert len(_error_lines(proc)) == 1 and "nope.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("test_set, named", [
    ("voc:{tmp}/no_such_voc:test", "no_such_voc does not exist"),
    ("voc_2007_tset", "'voc_2007_tset' is not registered"),
    ("voc:{tmp}/voc", "expected 'voc:PATH:SPLIT'"),
])
def test_train_net_refuses_bad_test_set_before_training(tmp_path, test_set, named):
    root = make_voc(tmp_path / "voc", {"a": (64, 48, [("dog", [5, 6, 30, 40], 0)])},
                    classes=["dog"])
    out = tmp_path / "out"
    proc = _run("train_net.py", "--config", QUICKSTART,
                "DATASETS.TRAIN", f"('voc:{root}:train',)", "DATASETS.TEST", f"('{test_set.format(tmp=tmp_path)}',)", "MODEL.DEVICE", "cpu",
                "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", out)
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1 and "DATASETS.TEST" in lines[0] and named in lines[0], proc.stderr
    assert not (out / "metrics.jsonl").exists()
    assert not out.exists() or not [f for f in os.listdir(out) if f.endswith(".pth")]
