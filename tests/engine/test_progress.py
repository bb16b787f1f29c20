"""The training progress log: the expected duration once, early; the periodic ETA line."""
import logging

from fewshot_det.engine.events import ESTIMATE_AFTER, Progress

STATS = {"loss_cls": 0.5, "total_loss": 0.5, "lr": 0.01, "time": 0.1, "data_time": 0.0}


def run(start, max_iter, caplog):
    caplog.set_level(logging.INFO, logger="fewshot_det.engine.events")
    progress = Progress(start, max_iter, enabled=True, period=20)
    for it in range(start, max_iter):
        progress.update(it, STATS)
    progress.close()
    return [r.getMessage() for r in caplog.records]


def test_expected_duration_is_logged_once_after_the_first_iterations(caplog):
    lines = run(100, 160, caplog)
    expected = [m for m in lines if m.startswith("expected duration:")]
    assert len(expected) == 1
    first = 100 + ESTIMATE_AFTER + 2  # 1 untimed + ESTIMATE_AFTER timed, then the rest
    assert f"for iterations {first}-160" in expected[0]
    assert f"timed over {ESTIMATE_AFTER} iterations" in expected[0]
    assert sum(m.startswith("iter ") for m in lines) == 3  # 120, 140, 160


def test_no_estimate_when_the_run_ends_first(caplog):
    assert not [m for m in run(0, ESTIMATE_AFTER + 1, caplog) if "expected" in m]


def test_the_log_line_reports_the_mean_step_time_of_its_period(caplog):
    caplog.set_level(logging.INFO, logger="fewshot_det.engine.events")
    progress = Progress(0, 40, enabled=True, period=20)
    for it in range(40):  # 0.5 s on even iterations, 0.7 s on odd ones: mean 0.6
        progress.update(it, {**STATS, "time": 0.5 + 0.2 * (it % 2), "data_time": 0.01})
    progress.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("iter ")]
    assert len(lines) == 2
    assert all("0.600 s/it  data 0.010 s" in m for m in lines)
