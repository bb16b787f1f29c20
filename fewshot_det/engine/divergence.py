"""Telling a sane loss from a diverging one, so that no checkpoint keeps blown-up weights.

A NaN/inf loss is caught by the step itself. A diverging run is usually visible earlier:
a step with a much too large learning rate leaves finite weights of 1e20 and more, and
the next loss is finite but thousands of times the loss so far. A checkpoint written from
those weights is finite, yet resuming from it diverges again whatever the learning rate.
So a periodic checkpoint is held in memory until the next iteration's loss has been seen
(``Checkpointer.stage`` / ``commit``), and ``LossWatch`` says whether that loss is sane.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Optional


class LossWatch:
    """Judges each iteration's total loss against the median of the recent sane ones.

    Args:
        factor: a loss above ``factor`` x the recent median counts as exploded
            (``SOLVER.DIVERGENCE_FACTOR``); 0 disables this check (NaN/inf still count).
        window: how many recent sane losses make the median.
    """

    def __init__(self, factor: float, window: int = 20):
        self.factor, self.window = factor, window
        self.recent: deque = deque(maxlen=window)
        self.streak = 0  # consecutive exploded losses

    def problem(self, loss: float) -> Optional[str]:
        """None when ``loss`` looks sane (it then joins the median), else why not."""
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        if self.factor > 0 and self.recent:
            median = statistics.median(self.recent)
            if loss > self.factor * median:
                self.streak += 1
                return (f"the loss {loss:.4g} is {loss / median:.3g}x the median "
                        f"{median:.4g} of the last {len(self.recent)} sane iterations "
                        f"(SOLVER.DIVERGENCE_FACTOR {self.factor:g})")
        self.recent.append(loss)
        self.streak = 0
        return None

    def diverged(self) -> bool:
        """The loss has stayed exploded for ``window`` iterations: the run will not recover."""
        return self.streak >= self.window
