"""Seed statistics (``evaluation.seeds``): values checked by hand."""
import math

import pytest

from fewshot_det.evaluation.seeds import (aggregate, format_summary, paired_difference, pm,
                                          summarize, t_quantile_975)


def test_aggregate_by_hand():
    agg = aggregate([0.1, 0.2, 0.3, 0.4])
    assert agg["mean"] == pytest.approx(0.25)
    # sample std: sqrt(((.15^2 + .05^2) * 2) / 3) = 0.129099
    assert agg["std"] == pytest.approx(0.1290994, abs=1e-6)
    # t_{0.975, 3} = 3.182446; ci = 3.182446 * 0.129099 / 2 = 0.205426
    assert agg["ci95"] == pytest.approx(0.2054264, abs=1e-6)
    assert agg["values"] == [0.1, 0.2, 0.3, 0.4]
    one = aggregate([0.5])
    assert one == {"mean": 0.5, "std": 0.0, "ci95": None, "values": [0.5]}
    assert aggregate([]) == {"mean": None, "std": None, "ci95": None, "values": []}


def test_t_quantiles():
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile_975(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile_975(9) == pytest.approx(2.2622, abs=1e-4)
    assert t_quantile_975(40) == pytest.approx(2.0211, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.9799, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_summary_over_seeds_and_table():
    per_seed = [{"nAP50": 0.30, "bAP50": 0.80, "AP50": 0.6, "nAP": 0.1, "per_class": {}},
                {"nAP50": 0.40, "bAP50": 0.82, "AP50": 0.65, "nAP": -1},
                {"nAP50": 0.50, "bAP50": 0.78, "AP50": 0.62, "nAP": 0.2}]
    s = summarize(10, [0, 1, 2], per_seed)
    assert s["shots"] == 10 and s["seeds"] == [0, 1, 2] and "per_class" not in s["metrics"]
    n = s["metrics"]["nAP50"]
    assert n["mean"] == pytest.approx(0.4) and n["std"] == pytest.approx(0.1)
    assert n["ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
    assert s["metrics"]["nAP"]["values"] == [0.1, 0.2]  # -1 (undefined) left out
    table = format_summary(s)
    assert "nAP50" in table and "40.0 " in table and "± 24.8" in table
    assert "30.0 40.0 50.0" in table


def test_paired_difference_over_common_seeds():
    diff, t = paired_difference({0: 3.0, 1: 5.0, 2: 4.0, 7: 9.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    # differences 2, 3, 1: mean 2, sample std 1, t = 2 / (1 / sqrt(3))
    assert diff["values"] == [2.0, 3.0, 1.0] and diff["mean"] == pytest.approx(2.0)
    assert diff["std"] == pytest.approx(1.0) and t == pytest.approx(2 * math.sqrt(3))
    _, t_one = paired_difference({0: 1.0}, {0: 0.5})
    assert math.isnan(t_one)
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_pm_formats_mean_and_interval():
    assert pm({"mean": 12.34, "ci95": 1.26}) == "12.3 ± 1.3"
    assert pm({"mean": 2.0, "ci95": None}, signed=True) == "+2.0"
    assert pm(None) == "n/a" and pm({"mean": None}) == "n/a"
