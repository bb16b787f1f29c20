#!/usr/bin/env python
"""Paired comparison of few-shot methods over split seeds, from their summary.json files.

    python benchmarks/compare_seeds.py --metric nAP50 --baseline tfa \
        --run siamese=output/a/siamese_10shot,output/b/siamese_10shot \
        --run tfa=output/a/tfa_10shot,output/b/tfa_10shot

Every ``--run NAME=DIR[,DIR...]`` names a method and the ``tools/finetune_fewshot.py``
output folders holding its seeds (several runs of the same method and K, e.g. seeds added
later). A seed's K-shot split is the same for every method, so the comparison is paired:
per seed, method minus baseline, then mean ± 95 % CI (t) of those differences and the
paired t statistic. Two methods whose unpaired CIs overlap can still differ clearly when
the split explains most of the spread.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def seed_values(dirs: List[str], metric: str) -> Dict[int, float]:
    """seed -> value of ``metric`` over the summary.json of every folder in ``dirs``."""
    out: Dict[int, float] = {}
    for d in dirs:
        path = os.path.join(d, "summary.json")
        if not os.path.isfile(path):
            raise SystemExit(f"{path}: not found (a finished tools/finetune_fewshot.py run?)")
        with open(path) as f:
            summary = json.load(f)
        if metric not in summary["metrics"]:
            raise SystemExit(f"{path}: no metric {metric!r} (has {sorted(summary['metrics'])})")
        values = summary["metrics"][metric]["values"]
        if len(values) != len(summary["seeds"]):  # -1 (undefined) values were left out
            raise SystemExit(f"{path}: {metric} is undefined for some seeds")
        for seed, value in zip(summary["seeds"], values):
            if seed in out:
                raise SystemExit(f"{path}: seed {seed} appears twice for the same method")
            out[int(seed)] = float(value)
    return out


def paired_difference(values: Dict[int, float], baseline: Dict[int, float]):
    """(aggregate of ``values - baseline`` over their common seeds, paired t statistic);
    inputs seed -> value, outputs in the inputs' units."""
    from fewshot_det.engine.fewshot import aggregate

    seeds = sorted(set(values) & set(baseline))
    diff = aggregate([values[s] - baseline[s] for s in seeds])
    t = (diff["mean"] / (diff["std"] / math.sqrt(len(seeds)))
         if len(seeds) > 1 and diff["std"] else float("nan"))
    return diff, t


def compare(runs: Dict[str, Dict[int, float]], baseline: str) -> List[str]:
    """Markdown lines: per method its values, mean ± CI, and the paired difference."""
    from fewshot_det.engine.fewshot import aggregate

    seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
    if not seeds:
        raise SystemExit("the runs share no seed")
    lines = [f"seeds {seeds} (paired: the seeds every method has)", "",
             f"| method | per seed | mean ± 95 % CI | minus {baseline} (paired) | t |",
             "|---|---|---|---|---|"]
    for name, values in runs.items():
        vals = [values[s] for s in seeds]
        agg = aggregate([100 * v for v in vals])
        row = f"| {name} | {' / '.join(f'{100 * v:.1f}' for v in vals)} | {pm(agg)} |"
        if name == baseline:
            lines.append(row + " - | - |")
            continue
        diff, t = paired_difference({s: 100 * values[s] for s in seeds},
                                    {s: 100 * runs[baseline][s] for s in seeds})
        lines.append(row + f" {pm(diff, signed=True)} | {t:.2f} |")
    return lines


def pm(agg, signed: bool = False) -> str:
    mean = f"{agg['mean']:+.1f}" if signed else f"{agg['mean']:.1f}"
    return mean if agg["ci95"] is None else f"{mean} ± {agg['ci95']:.1f}"


def main(argv=None) -> List[str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR[,DIR...]")
    p.add_argument("--baseline", required=True, help="NAME of the method compared against")
    p.add_argument("--metric", default="nAP50")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            raise SystemExit(f"--run {spec!r}: expected NAME=DIR[,DIR...]")
        runs[name] = seed_values(dirs.split(","), args.metric)
    if args.baseline not in runs:
        raise SystemExit(f"--baseline {args.baseline!r} is not one of the runs {list(runs)}")
    lines = compare(runs, args.baseline)
    print(f"{args.metric} (%)")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
