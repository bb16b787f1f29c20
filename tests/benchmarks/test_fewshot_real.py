"""benchmarks/fewshot_real.py: the time per seed counts only the seeds timed whole."""
import json
import os
from types import SimpleNamespace

import fewshot_det.engine.fewshot as fewshot
from benchmark_scripts import load_benchmark


def _finish(out, seed):
    os.makedirs(os.path.join(out, f"seed{seed}"), exist_ok=True)
    with open(os.path.join(out, f"seed{seed}", "results.json"), "w") as f:
        json.dump({}, f)


def test_seeds_read_back_from_an_interrupted_run_are_not_timed(tmp_path, monkeypatch):
    bench = load_benchmark("fewshot_real")
    clock = iter([0.0, 180.0, 1000.0, 1120.0])  # 3 min, then 2 min
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))

    def fake_run(cfg, shots, seeds, **kwargs):  # finishes every seed, as run_fewshot does
        for s in seeds:
            _finish(cfg.OUTPUT_DIR, s)
        return {"seeds": list(seeds)}

    monkeypatch.setattr(fewshot, "run_fewshot", fake_run)
    cfg = SimpleNamespace(OUTPUT_DIR=str(tmp_path))
    for s in (0, 1):  # an interrupted run finished two seeds, then was killed
        _finish(str(tmp_path), s)
    assert bench.fewshot_stage(cfg, 1, [0, 1, 2])["minutes_per_seed"] == 3.0
    # a later run with more seeds: the earlier stage's seeds count with its time per seed
    assert bench.fewshot_stage(cfg, 1, [0, 1, 2, 3, 4])["minutes_per_seed"] == (3 * 3 + 2) / 5
    # nothing timed at all: no time rather than a wrong one
    other = SimpleNamespace(OUTPUT_DIR=str(tmp_path / "other"))
    _finish(other.OUTPUT_DIR, 0)
    clock = iter([0.0, 5.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    assert bench.fewshot_stage(other, 1, [0])["minutes_per_seed"] is None
