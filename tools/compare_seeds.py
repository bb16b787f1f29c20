#!/usr/bin/env python
"""Paired comparison of few-shot methods over split seeds, from their summary.json files.

    python tools/compare_seeds.py --metric nAP50 --baseline tfa \\
        --run siamese=output/a/siamese_10shot,output/b/siamese_10shot \\
        --run tfa=output/a/tfa_10shot,output/b/tfa_10shot

Every ``--run NAME=DIR[,DIR...]`` names a method and the ``tools/finetune_fewshot.py``
output folders holding its seeds (several folders of the same method and K, e.g. seeds
added later). A seed's K-shot split is the same for every method, so the comparison is
paired: per seed, method minus baseline, then mean ± 95 % CI (t) of those differences and
the paired t statistic. Two methods whose unpaired CIs overlap can still differ clearly
when the split explains most of the spread.

Needs neither torch nor a model: it reads the summaries only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

from fewshot_det.evaluation.seeds import aggregate, paired_difference, pm


class RunError(ValueError):
    """A --run folder that cannot be compared (missing, lacking the metric, repeated seed)."""


def read_summary(path: str, metric: str) -> dict:
    """The summary.json at ``path``, checked to hold ``metric`` for every seed."""
    if not os.path.isfile(path):
        raise RunError(f"{path}: not found (a finished tools/finetune_fewshot.py run?)")
    try:
        with open(path) as f:
            summary = json.load(f)
        metrics, seeds = summary["metrics"], summary["seeds"]
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}: not a finetune_fewshot summary ({e})") from None
    if metric not in metrics:
        raise RunError(f"{path}: no metric {metric!r} (has {sorted(metrics)})")
    if len(metrics[metric]["values"]) != len(seeds):  # -1 (undefined) values were left out
        raise RunError(f"{path}: {metric} is undefined for some seeds")
    return summary


def seed_values(dirs: List[str], metric: str) -> Dict[int, float]:
    """seed -> value of ``metric`` over the summary.json of every folder in ``dirs``."""
    out: Dict[int, float] = {}
    for d in dirs:
        path = os.path.join(d, "summary.json")
        summary = read_summary(path, metric)
        for seed, value in zip(summary["seeds"], summary["metrics"][metric]["values"]):
            if int(seed) in out:
                raise RunError(f"{path}: seed {seed} appears twice for the same method")
            out[int(seed)] = float(value)
    return out


def compare(runs: Dict[str, Dict[int, float]], baseline: str) -> List[str]:
    """Markdown lines: per method its values, mean ± CI, and the paired difference."""
    seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
    if not seeds:
        raise RunError(f"the runs share no seed ({ {n: sorted(v) for n, v in runs.items()} })")
    lines = [f"seeds {seeds} (paired: the seeds every method has)", "",
             f"| method | per seed | mean ± 95 % CI | minus {baseline} (paired) | t |",
             "|---|---|---|---|---|"]
    for name, values in runs.items():
        points = {s: 100 * values[s] for s in seeds}
        row = (f"| {name} | {' / '.join(f'{points[s]:.1f}' for s in seeds)} | "
               f"{pm(aggregate(list(points.values())))} |")
        if name == baseline:
            lines.append(row + " - | - |")
            continue
        diff, t = paired_difference(points, {s: 100 * runs[baseline][s] for s in seeds})
        lines.append(row + f" {pm(diff, signed=True)} | {t:.2f} |")
    return lines


def parse_runs(specs: List[str], metric: str) -> Dict[str, Dict[int, float]]:
    """{NAME: seed -> value} from the ``--run NAME=DIR[,DIR...]`` arguments."""
    runs = {}
    for spec in specs:
        name, sep, dirs = spec.partition("=")
        if not sep or not name or not dirs:
            raise RunError(f"--run {spec!r}: expected NAME=DIR[,DIR...]")
        if name in runs:
            raise RunError(f"--run {spec!r}: method {name!r} given twice (list its folders "
                           f"in one --run, separated by commas)")
        runs[name] = seed_values(dirs.split(","), metric)
    return runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                   help="a method and its finetune_fewshot.py output folder(s)")
    p.add_argument("--baseline", required=True, help="NAME of the method compared against")
    p.add_argument("--metric", default="nAP50", help="a metric of summary.json (nAP50)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = parse_runs(args.run, args.metric)
        if args.baseline not in runs:
            raise RunError(f"--baseline {args.baseline!r} is not one of the runs {list(runs)}")
        lines = compare(runs, args.baseline)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.metric} (%)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
