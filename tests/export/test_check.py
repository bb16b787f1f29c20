"""The parity check that decides whether an export is accepted."""
import torch

from fewshot_det.export.check import BOX_RTOL, SCORE_ATOL, ParityReport, compare


def dets(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64)}


REF = dets([[10, 10, 50, 60], [100, 20, 140, 90], [5, 5, 9, 9]], [0.9, 0.5, 0.5], [1, 2, 1])


def test_equal_lists_match():
    r = compare(REF, REF, (100, 200))
    assert r.ok and r.matched == 3 and r.box_error == 0 and r.score_error == 0


def test_equal_scores_may_come_in_either_order():
    swapped = {k: v[[0, 2, 1]] for k, v in REF.items()}
    assert compare(REF, swapped, (100, 200)).ok


def test_a_box_moved_beyond_the_tolerance_is_not_matched():
    moved = {k: v.clone() for k, v in REF.items()}
    moved["boxes"][1, 2] *= 1 + 3 * BOX_RTOL
    r = compare(REF, moved, (100, 200))
    assert not r.ok and r.matched == 2 and 0.4 < r.unmatched_px < 0.43
    report = ParityReport([r])
    assert not report.ok and "DIFFERENT" in report.summary()


def test_score_label_and_count_differences_fail():
    shifted = {k: v.clone() for k, v in REF.items()}
    shifted["scores"][0] += 2 * SCORE_ATOL
    assert compare(REF, shifted, (1, 1)).matched == 2
    relabelled = {k: v.clone() for k, v in REF.items()}
    relabelled["labels"][2] = 2
    assert not compare(REF, relabelled, (1, 1)).ok
    fewer = {k: v[:2] for k, v in REF.items()}
    assert not compare(REF, fewer, (1, 1)).ok
    assert not compare(fewer, REF, (1, 1)).ok  # one left over


def test_two_empty_lists_match():
    empty = dets([], [], [])
    assert compare(empty, empty, (1, 1)).ok
