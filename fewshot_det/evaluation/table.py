"""Plain-text tables of the evaluator's metrics (per class, then the summary)."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from .evaluator import SUMMARY_KEYS

_CLASS_COLUMNS = (("GT", "num_gt"), ("AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"),
                  ("VOC07", "VOC07_AP50"), ("VOC", "VOC_AP50"), ("P", "precision"),
                  ("R", "recall"))


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "-" if value is None or value <= -1 else f"{value:.3f}"


def _grid(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first left-aligned, the others right."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_table(metrics: Dict[str, Any]) -> str:
    """Per-class table (GT count, AP, AP50, AP75, VOC07/VOC AP50, precision, recall) and the
    summary (all classes, then base / novel when present). ``-`` marks undefined (-1).
    Fractions in [0, 1], as in the json."""
    per_class = metrics.get("per_class", {})
    rows = [[name] + [_fmt(m.get(key)) for _, key in _CLASS_COLUMNS]
            for name, m in per_class.items()]
    parts = [_grid(["class"] + [h for h, _ in _CLASS_COLUMNS], rows)] if rows else []
    groups = [("all", "")] + [(label, p) for label, p in (("base", "b"), ("novel", "n"))
                              if p + "AP" in metrics]
    summary = [[key] + [_fmt(metrics.get(p + key)) for _, p in groups] for key in SUMMARY_KEYS]
    parts.append(_grid(["metric"] + [label for label, _ in groups], summary))
    return "\n\n".join(parts)
