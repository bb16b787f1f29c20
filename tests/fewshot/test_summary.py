import logging
import math

import pytest

from fewshot_det.data.catalog import Metadata
from fewshot_det.data.fewshot import FewShotWarning
from fewshot_det.engine.fewshot import (aggregate, format_summary, short_classes, summarize,
                                        t_quantile_975, warn_if_no_novel_ap)


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


def test_zero_novel_ap_warns_loudly(caplog):
    with caplog.at_level(logging.WARNING), pytest.warns(FewShotWarning, match="nAP50 = 0"):
        assert warn_if_no_novel_ap({"nAP": 0.0, "nAP50": 0.0, "bAP50": 0.7}, "10-shot seed 1")
    assert "!!!!" in caplog.text and "surgery" in caplog.text
    assert not warn_if_no_novel_ap({"nAP": 0.01, "nAP50": 0.2}, "x")
    assert not warn_if_no_novel_ap({"AP50": 0.0}, "no novel classes")  # no novel keys


def test_short_classes_counts_instances():
    meta = Metadata("m", thing_classes=["a", "b", "c"])
    records = [{"annotations": [{"category_id": 1}, {"category_id": 1}, {"category_id": 2}]},
               {"annotations": [{"category_id": 1}]}]
    assert short_classes(records, meta, 2) == {"b": 1, "c": 0}
