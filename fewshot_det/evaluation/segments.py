"""Vectorised helpers on "segments": runs of equal keys in a sorted array.

Both protocols work on flat arrays sorted by a group key (image x class, or class) instead
of Python loops over groups; these helpers are the few primitives they need.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def segment_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """int64 [S]: index of the first element of each run of equal keys (empty -> [])."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    return np.concatenate([[0], change]).astype(np.int64)


def rank_in_segment(sorted_keys: np.ndarray) -> np.ndarray:
    """int64 [N]: position of each element inside its run of equal keys (0, 1, 2, ...)."""
    n = len(sorted_keys)
    first = np.zeros(n, dtype=np.int64)
    starts = segment_starts(sorted_keys)
    first[starts] = starts
    return np.arange(n, dtype=np.int64) - np.maximum.accumulate(first) if n else first


def segment_ids(starts: np.ndarray, n: int) -> np.ndarray:
    """int64 [n]: which segment each element belongs to, given the segment starts."""
    ids = np.zeros(n, dtype=np.int64)
    if len(starts) > 1:
        ids[starts[1:]] = 1
    return np.cumsum(ids)


def same_key_pairs(det_keys: np.ndarray, gt_keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) index pair whose keys are equal.

    Args:
        det_keys: int64 [D] group key of each detection (e.g. image * K + class).
        gt_keys: int64 [G] group key of each GT box.
    Returns:
        (det_idx, gt_idx): int64 [P] each, ordered by detection, then by GT index (so a
        detection sees the GT boxes of its group in their original order).
    """
    gt_order = np.argsort(gt_keys, kind="stable")
    sorted_keys = gt_keys[gt_order]
    lo = np.searchsorted(sorted_keys, det_keys, side="left")
    count = np.searchsorted(sorted_keys, det_keys, side="right") - lo
    det_idx = np.repeat(np.arange(len(det_keys), dtype=np.int64), count)
    first_pair = np.cumsum(count) - count  # where each detection's pairs begin
    pos = np.arange(len(det_idx), dtype=np.int64) + np.repeat(lo - first_pair, count)
    return det_idx, gt_order[pos]


def segmented_suffix_max(values: np.ndarray, segment_of: np.ndarray) -> np.ndarray:
    """float [N]: max of ``values[i:end of i's segment]`` for every i, exactly.

    ``segment_of`` must be nondecreasing. Works on ranks (``np.unique``) so that adding an
    offset per segment cannot round the values.
    """
    if len(values) == 0:
        return values.copy()
    uniq, rank = np.unique(values, return_inverse=True)
    num_segments = int(segment_of[-1]) + 1
    # Later segments get smaller offsets so a reversed running max never crosses into an
    # earlier segment.
    offset = (num_segments - 1 - segment_of).astype(np.int64) * (len(uniq) + 1)
    keyed = rank.astype(np.int64).reshape(-1) + offset
    running = np.maximum.accumulate(keyed[::-1])[::-1]
    return uniq[running - offset]
