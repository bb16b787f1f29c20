import importlib.util
import json
import os

import pytest

from fewshot_det.engine.fewshot import summarize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _compare_seeds():
    spec = importlib.util.spec_from_file_location(
        "compare_seeds", os.path.join(REPO, "benchmarks", "compare_seeds.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_dir(root, name, seeds, values):
    d = root / name
    d.mkdir()
    per_seed = [{"nAP50": v, "bAP50": 0.5} for v in values]
    with open(d / "summary.json", "w") as f:
        json.dump(summarize(10, seeds, per_seed), f)
    return str(d)


def test_paired_difference_over_runs_of_several_folders(tmp_path):
    cs = _compare_seeds()
    a1 = _run_dir(tmp_path, "a1", [0, 1], [0.60, 0.70])
    a2 = _run_dir(tmp_path, "a2", [2], [0.65])
    b = _run_dir(tmp_path, "b", [0, 1, 2, 3], [0.50, 0.62, 0.61, 0.9])
    lines = cs.main(["--baseline", "b", "--run", f"a={a1},{a2}", "--run", f"b={b}"])
    assert lines[0].startswith("seeds [0, 1, 2]")  # seed 3: only the baseline has it
    row_a = next(line for line in lines if line.startswith("| a |"))
    # differences +10, +8, +4 points: mean +7.3, std 3.06, t = 7.33 / (3.06 / sqrt 3)
    assert "60.0 / 70.0 / 65.0" in row_a and "| +7.3 ± " in row_a
    assert row_a.endswith("| 4.16 |")


def test_bad_runs_are_clear_errors(tmp_path):
    cs = _compare_seeds()
    a = _run_dir(tmp_path, "a", [0, 1], [0.6, 0.7])
    with pytest.raises(SystemExit, match="seed 0 appears twice"):
        cs.main(["--baseline", "a", "--run", f"a={a},{a}"])
    with pytest.raises(SystemExit, match="no metric 'nAP75'"):
        cs.main(["--baseline", "a", "--metric", "nAP75", "--run", f"a={a}"])
    with pytest.raises(SystemExit, match="--baseline 'tfa' is not one of the runs"):
        cs.main(["--baseline", "tfa", "--run", f"a={a}"])
    with pytest.raises(SystemExit, match="summary.json: not found"):
        cs.main(["--baseline", "a", "--run", f"a={tmp_path / 'missing'}"])
