"""Statistics over few-shot split seeds (TFA's protocol), torch-free.

A few-shot result depends strongly on which K instances were drawn, so every number is a
mean over split seeds with a 95 % confidence interval of that mean,
``t_{0.975, n-1} * std / sqrt(n)`` (sample standard deviation). Two methods run on the
same seeds are compared *paired*: per seed, method minus baseline, then the same interval
on those differences.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

# Metrics shown in the printed table (all numeric metrics go to summary.json).
TABLE_METRICS = ("nAP50", "nAP", "nAP75", "bAP50", "bAP", "AP50", "AP")
# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
         2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
         2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
         2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


def t_quantile_975(dof: int) -> float:
    """t_{0.975} with ``dof`` degrees of freedom (table; Cornish-Fisher beyond 30)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)


def aggregate(values: Sequence[float]) -> Dict[str, object]:
    """{"mean", "std" (sample, ddof 1), "ci95" (t-based; None for one value), "values"}."""
    values = [float(v) for v in values]
    n = len(values)
    if not n:
        return {"mean": None, "std": None, "ci95": None, "values": []}
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "std": 0.0, "ci95": None, "values": values}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "std": std, "ci95": t_quantile_975(n - 1) * std / math.sqrt(n),
            "values": values}


def summarize(shots: int, seeds: Sequence[int], per_seed: Sequence[Mapping[str, float]], *,
              mode: str = "finetune") -> Dict[str, object]:
    """The summary of one K over seeds: every numeric top-level metric aggregated.

    Values of -1 (undefined, e.g. no novel class) are left out of a metric's aggregate.
    """
    names = [k for k, v in per_seed[0].items() if isinstance(v, (int, float))] if per_seed \
        else []
    metrics = {k: aggregate([m[k] for m in per_seed if m.get(k, -1) != -1]) for k in names}
    return {"shots": int(shots), "seeds": [int(s) for s in seeds], "mode": mode,
            "metrics": metrics}


def format_summary(summary: Mapping[str, object]) -> str:
    """The printed table: mean ± 95 % CI over seeds, in percent."""
    metrics = summary["metrics"]
    seeds = summary["seeds"]
    lines = [f"{summary['shots']}-shot {summary.get('mode', 'finetune')}, {len(seeds)} seeds "
             f"{seeds}: mean ± 95% CI (t-distribution), %",
             f"{'metric':<8} {'mean':>7} {'± ci95':>8} {'std':>6}  values"]
    for name in [m for m in TABLE_METRICS if m in metrics]:
        agg = metrics[name]
        if agg["mean"] is None:
            continue
        ci = f"{100 * agg['ci95']:.1f}" if agg["ci95"] is not None else "n/a"
        vals = " ".join(f"{100 * v:.1f}" for v in agg["values"])
        lines.append(f"{name:<8} {100 * agg['mean']:7.1f} {'± ' + ci:>8} "
                     f"{100 * agg['std']:6.1f}  {vals}")
    return "\n".join(lines)


def paired_difference(values: Mapping[int, float],
                      baseline: Mapping[int, float]) -> Tuple[Dict[str, object], float]:
    """(aggregate of ``values - baseline`` over their common seeds, paired t statistic).

    Inputs map seed -> value; the outputs are in the inputs' units. The t statistic is NaN
    for fewer than two common seeds or identical differences.
    """
    seeds = sorted(set(values) & set(baseline))
    if not seeds:
        raise ValueError("paired comparison: the two runs share no seed")
    diff = aggregate([values[s] - baseline[s] for s in seeds])
    t = (diff["mean"] / (diff["std"] / math.sqrt(len(seeds)))
         if len(seeds) > 1 and diff["std"] else float("nan"))
    return diff, t


def pm(agg: Optional[Mapping[str, object]], signed: bool = False) -> str:
    """"mean ± ci95" of an ``aggregate`` (one decimal, the aggregate's units); "n/a" for
    none, the mean alone for a single value."""
    if not agg or agg.get("mean") is None:
        return "n/a"
    mean = f"{agg['mean']:+.1f}" if signed else f"{agg['mean']:.1f}"
    return mean if agg["ci95"] is None else f"{mean} ± {agg['ci95']:.1f}"
