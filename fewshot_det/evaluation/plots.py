"""Per-class precision/recall curves as PNG files.

matplotlib is imported only when plots are asked for, and drawn through its Agg canvas
directly (no pyplot, so no global backend state is touched).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Tuple

import numpy as np


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "class"


def save_pr_curves(curves: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]], out_dir: str,
                   *, score_thresh: float, iou_thresh: float) -> List[str]:
    """Write ``<out_dir>/pr_<class>.png`` for every class that has ground truth.

    Args:
        curves: class name -> (recall [D], precision [D], score [D]) in decreasing score.
        out_dir: created if missing.
        score_thresh: the operating point marked on each curve.
        iou_thresh: shown in the title.
    Returns:
        the paths written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    os.makedirs(out_dir, exist_ok=True)
    paths: List[str] = []
    for name, (rec, prec, score) in curves.items():
        fig = Figure(figsize=(4.5, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(np.concatenate([[0.0], rec]), np.concatenate([[1.0], prec]), lw=1.5)
        above = np.flatnonzero(score >= score_thresh)
        if len(above):
            i = above[-1]
            ax.plot([rec[i]], [prec[i]], "o", color="C3",
                    label=f"score >= {score_thresh:g}: P={prec[i]:.3f} R={rec[i]:.3f}")
            ax.legend(loc="lower left", fontsize=8)
        ax.set(xlim=(0, 1.01), ylim=(0, 1.01), xlabel="recall", ylabel="precision",
               title=f"{name} (IoU > {iou_thresh:g})")
        ax.grid(alpha=0.3)
        path = os.path.join(out_dir, f"pr_{_safe_name(name)}.png")
        if path in paths:  # two names that sanitise alike
            path = path[:-4] + f"_{len(paths)}.png"
        fig.tight_layout()
        fig.savefig(path)
        paths.append(path)
    return paths
