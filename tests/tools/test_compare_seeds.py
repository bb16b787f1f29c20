import json
import os
import subprocess
import sys

import pytest

from fewshot_det.evaluation.seeds import summarize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "compare_seeds.py")
# Runs the tool with torch made unimportable: any `import torch` on its path fails.
NO_TORCH = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_tool(*args):
    return subprocess.run([sys.executable, "-c", NO_TORCH, TOOL, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def run_dir(root, name, seeds, values):
    d = root / name
    d.mkdir()
    per_seed = [{"nAP50": v, "bAP50": 0.5} for v in values]
    with open(d / "summary.json", "w") as f:
        json.dump(summarize(10, seeds, per_seed), f)
    return str(d)


def test_paired_difference_over_runs_of_several_folders_without_torch(tmp_path):
    a1 = run_dir(tmp_path, "a1", [0, 1], [0.60, 0.70])
    a2 = run_dir(tmp_path, "a2", [2], [0.65])
    b = run_dir(tmp_path, "b", [0, 1, 2, 3], [0.50, 0.62, 0.61, 0.9])
    proc = run_tool("--baseline", "b", "--run", f"a={a1},{a2}", "--run", f"b={b}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "nAP50 (%)"
    assert lines[1].startswith("seeds [0, 1, 2]")  # seed 3: only the baseline has it
    row_a = next(line for line in lines if line.startswith("| a |"))
    # differences +10, +8, +4 points: mean +7.3, std 3.06, t = 7.33 / (3.06 / sqrt 3) = 4.16;
    # CI 4.303 * 3.06 / sqrt 3 = 7.6
    assert row_a == "| a | 60.0 / 70.0 / 65.0 | 65.0 ± 12.4 | +7.3 ± 7.6 | 4.16 |"
    row_b = next(line for line in lines if line.startswith("| b |"))
    assert row_b == "| b | 50.0 / 62.0 / 61.0 | 57.7 ± 16.5 | - | - |"


@pytest.mark.parametrize("args, message", [
    (["--run", "a={a},{a}"], "seed 0 appears twice"),
    (["--metric", "nAP75", "--run", "a={a}"], "no metric 'nAP75'"),
    (["--run", "a={missing}"], "summary.json: not found"),
    (["--run", "a"], "expected NAME=DIR"),
    (["--run", "a={a}", "--run", "a={a}"], "method 'a' given twice"),
])
def test_bad_runs_are_one_line_errors(tmp_path, args, message):
    a = run_dir(tmp_path, "a", [0, 1], [0.6, 0.7])
    args = [s.format(a=a, missing=tmp_path / "missing") for s in args]
    proc = run_tool("--baseline", "a", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_baseline_is_named(tmp_path):
    a = run_dir(tmp_path, "a", [0, 1], [0.6, 0.7])
    proc = run_tool("--baseline", "tfa", "--run", f"a={a}")
    assert proc.returncode == 2 and "--baseline 'tfa' is not one of the runs ['a']" in proc.stderr


def test_the_no_torch_guard_catches_an_import_of_torch(tmp_path):
    script = tmp_path / "uses_torch.py"
    script.write_text("import torch\n")
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(script)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "torch" in proc.stderr
