"""Training logs: ``metrics.jsonl`` (one line per logged iteration), TensorBoard when
installed, and a console progress bar with ETA, losses, lr, s/iter and data time (the log
line's s/iter and data time: means since the previous line)."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, Optional

from tqdm import tqdm

logger = logging.getLogger(__name__)


class MetricsWriter:
    """Appends dicts to ``OUTPUT_DIR/metrics.jsonl`` and, if available, TensorBoard."""

    def __init__(self, output_dir: str, *, tensorboard: bool = True):
        os.makedirs(output_dir, exist_ok=True)
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(output_dir)
            except Exception:  # tensorboard is optional
                self._tb = None

    def write(self, iteration: int, values: Dict[str, float]) -> None:
        self._file.write(json.dumps({"iteration": iteration, **values}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, iteration)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


# Iterations timed before the expected duration is logged; the first one is left out
# (it allocates, and starts the data workers).
ESTIMATE_AFTER = 10


class Progress:
    """tqdm bar over iterations [start, max_iter) plus a log line every ``period``, and
    once, after ``ESTIMATE_AFTER`` iterations, the run's expected duration."""

    def __init__(self, start: int, max_iter: int, *, enabled: bool, period: int = 20):
        self.start, self.max_iter, self.period = start, max_iter, period
        self.enabled = enabled
        self._t1: Optional[float] = None  # end of the first iteration
        # Step and data times summed since the last log line: single iterations vary by 20 %
        # and more (0.50-0.80 s within one quick-start run), so the line reports the mean.
        self._period_time = self._period_data = 0.0
        self._period_count = 0
        # The bar only on a terminal; logs and CI get the periodic line (with ETA) instead.
        self._bar = tqdm(total=max_iter, initial=start, dynamic_ncols=True,
                         disable=not (enabled and sys.stderr.isatty()),
                         file=sys.stderr, mininterval=1.0, desc="train")
        self._t0 = time.perf_counter()

    def update(self, iteration: int, stats: Dict[str, float]) -> Optional[str]:
        """Advance one iteration; returns the log line when one is due."""
        self._bar.update(1)
        short = {k.replace("loss_", ""): v for k, v in stats.items() if k.startswith("loss")}
        self._bar.set_postfix({k: f"{v:.3f}" for k, v in short.items()} |
                              {"lr": f"{stats['lr']:.2e}", "s/it": f"{stats['time']:.2f}",
                               "data": f"{stats['data_time']:.2f}"}, refresh=False)
        self._period_time += stats["time"]
        self._period_data += stats["data_time"]
        self._period_count += 1
        done = iteration + 1 - self.start
        if done == 1:
            self._t1 = time.perf_counter()
        elif done == ESTIMATE_AFTER + 1 and self.enabled and self.max_iter > iteration + 1:
            self._log_expected_duration(done - 1, iteration)
        if not self.enabled or (iteration + 1) % self.period and iteration + 1 != self.max_iter:
            return None
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / done * (self.max_iter - iteration - 1)
        n = self._period_count
        line = (f"iter {iteration + 1}/{self.max_iter}  eta {_hms(eta)}  "
                + "  ".join(f"{k} {v:.4f}" for k, v in stats.items() if k.startswith("loss"))
                + f"  lr {stats['lr']:.3e}  {self._period_time / n:.3f} s/it"
                f"  data {self._period_data / n:.3f} s")
        self._period_time = self._period_data = 0.0
        self._period_count = 0
        logger.info(line)
        return line

    def _log_expected_duration(self, timed: int, iteration: int) -> None:
        per_it = (time.perf_counter() - self._t1) / timed
        left = per_it * (self.max_iter - iteration - 1)
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        logger.info("expected duration: %s more for iterations %d-%d at %.2f s/it (timed over "
                    "%d iterations; evaluation not included), done about %s", _hms(left),
                    iteration + 2, self.max_iter, per_it, timed, finish)

    def close(self) -> None:
        self._bar.close()


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
