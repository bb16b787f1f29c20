"""tools/eval.py end to end (subprocess), the no-torch rule, and the speed benchmark's smoke run."""
import json
import os
import subprocess
import sys

import pytest

from eval_cases import random_coco_case, random_voc_case, run_pycocotools, write_voc_tree
from fewshot_det.evaluation import SUMMARY_KEYS
from fewshot_det.evaluation.coco_protocol import STAT_KEYS

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(REPO, "tools", "eval.py")


def _run(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120, **kwargs)


def test_tool_on_coco_json(tmp_path):
    gt, results = random_coco_case(11)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = tmp_path / "out" / "metrics.json"
    proc = _run([TOOL, "--gt", str(tmp_path / "gt.json"), "--predictions",
                 str(tmp_path / "res.json"), "--output", str(out), "--plots",
                 str(tmp_path / "plots")])
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert set(metrics) == set(SUMMARY_KEYS) | {"per_class"}
    ev = run_pycocotools(gt, results)
    assert max(abs(metrics[k] - s) for k, s in zip(STAT_KEYS, ev.stats)) <= 1e-9
    assert "class" in proc.stdout and "VOC07_AP50" in proc.stdout
    names = [f"pr_{n}.png" for n, m in metrics["per_class"].items() if m["num_gt"] > 0]
    assert sorted(os.listdir(tmp_path / "plots")) == sorted(names)


def test_tool_on_voc_root_with_base_novel(tmp_path):
    annotations, results = random_voc_case(3)
    root = tmp_path / "VOC"
    write_voc_tree(str(root), annotations, split="val")
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = tmp_path / "metrics.json"
    proc = _run([TOOL, "--gt", str(root), "--split", "val", "--predictions",
                 str(tmp_path / "res.json"), "--output", str(out), "--novel-classes", "dog"])
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert list(metrics["per_class"]) == ["cat", "dog", "person"]  # sorted names
    assert metrics["nVOC_AP50"] == metrics["per_class"]["dog"]["VOC_AP50"]
    assert "bAP" in metrics and "novel" in proc.stdout


def test_tool_reports_bad_input(tmp_path):
    gt, results = random_coco_case(12)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps([dict(results[0], category_id=777)]))
    proc = _run([TOOL, "--gt", str(tmp_path / "gt.json"), "--predictions",
                 str(tmp_path / "res.json")])
    assert proc.returncode == 2 and "category_id 777" in proc.stderr
    proc = _run([TOOL, "--gt", str(tmp_path / "nope"), "--predictions",
                 str(tmp_path / "res.json")])
    assert proc.returncode == 2 and "nope" in proc.stderr



def test_tool_refuses_negative_box_size_naming_the_entry(tmp_path):
    gt, results = random_coco_case(12)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    x, y, w, h = results[1]["bbox"]
    bad = [results[0], dict(results[1], bbox=[x, y, -w - 1, h]), results[2]]
    (tmp_path / "res.json").write_text(json.dumps(bad))
    proc = _run([TOOL, "--gt", str(tmp_path / "gt.json"), "--predictions",
                 str(tmp_path / "res.json")])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: results entry 1 has a negative width or height")
    assert "Traceback" not in proc.stderr


NO_TORCH = """
import runpy, sys
tool, gt, res, plots = sys.argv[1:]
sys.argv = [tool, "--gt", gt, "--predictions", res, "--plots", plots]
try:
    runpy.run_path(tool, run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
assert "torch" not in sys.modules, "torch was imported"
print("NO_TORCH_OK")
"""


def test_evaluating_a_results_file_does_not_import_torch(tmp_path):
    gt, results = random_coco_case(13)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    proc = _run(["-c", NO_TORCH, TOOL, str(tmp_path / "gt.json"),
                 str(tmp_path / "res.json"), str(tmp_path / "plots")])
    assert proc.returncode == 0 and "NO_TORCH_OK" in proc.stdout, proc.stderr


def test_speed_benchmark_smoke_run(tmp_path):
    pytest.importorskip("faster_coco_eval")
    proc = _run([os.path.join(REPO, "benchmarks", "eval_speed.py"), "--images", "20",
                 "--workdir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == \
        ["ours", "pycocotools", "faster-coco-eval"]
