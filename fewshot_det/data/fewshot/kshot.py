"""Seeded K-shot sampling with TFA semantics: exactly K annotated instances per class.

For each class separately (so one class's draw never depends on another's, nor on the order
of the class list):

1. The candidate images are those holding at least one *countable* instance of the class
   (not ``difficult``, not ``iscrowd``), ordered by image id so the record order of the
   reader does not matter.
2. A numpy ``Generator`` seeded from ``(seed, crc32(class name))`` shuffles them; walking the
   shuffled list, an image is taken only if its instances keep the class's count <= K
   (``prepare_coco_few_shot.py`` of TFA). A walk that ends below K is retried with a fresh
   shuffle (a few times); the best walk is kept.
3. If no walk reaches K although the class has >= K instances (e.g. every image holds more
   than K of them, like red blood cells), the walk is completed with the first instances
   (annotation order) of one more image, appended last, as TFA's loader trims a split to K
   boxes; the other instances of that image stay unlabelled, and a warning says so. Taking
   the *first* ones lets a VOC-style file (image list only) reproduce the split exactly.
4. If the class has fewer than K instances in total, all are taken and a warning gives the
   count.

The split of one class keeps, in each chosen image, only that class's sampled annotations
(TFA's per-class split files). The few-shot training set is the union over classes
(:func:`merge_class_splits`). No torch here.
"""
import copy
import warnings
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "FewShotWarning",
    "is_countable",
    "class_generator",
    "sample_class_shots",
    "sample_kshot",
    "merge_class_splits",
    "build_fewshot_dataset",
    "short_classes",
]

_MAX_WALKS = 20


class FewShotWarning(UserWarning):
    """A class could not get exactly K clean shots (too few instances, or a partial image)."""


def is_countable(ann: dict) -> bool:
    """Whether an annotation may be a shot: not ``difficult`` and not ``iscrowd``."""
    return not ann.get("difficult", 0) and not ann.get("iscrowd", 0)


def class_generator(seed: int, class_name: str) -> np.random.Generator:
    """The generator of one (seed, class): stable across runs, Python versions and class order."""
    return np.random.default_rng([int(seed), zlib.crc32(str(class_name).encode("utf-8"))])


def _class_instances(
    records: Sequence[dict], class_id: int
) -> List[Tuple[dict, List[int]]]:
    """(record, indices of countable annotations of ``class_id``) for images holding any,
    sorted by image id (then file name) so the reader's record order does not matter."""
    found = []
    for record in records:
        idx = [
            i for i, ann in enumerate(record.get("annotations", []))
            if int(ann["category_id"]) == class_id and is_countable(ann)
        ]
        if idx:
            found.append((record, idx))
    found.sort(key=lambda item: (str(item[0]["image_id"]), str(item[0]["file_name"])))
    return found


def _walk(order: np.ndarray, counts: List[int], shots: int) -> List[int]:
    """Greedy walk over candidate positions ``order``: take one if it keeps the total <= K."""
    chosen, total = [], 0
    for i in order:
        if total + counts[i] <= shots:
            chosen.append(int(i))
            total += counts[i]
            if total == shots:
                break
    return chosen


def _split_record(record: dict, ann_idx: Sequence[int]) -> dict:
    """A copy of ``record`` keeping only the annotations at ``ann_idx`` (deep-copied)."""
    out = {k: v for k, v in record.items() if k != "annotations"}
    out["annotations"] = [copy.deepcopy(record["annotations"][i]) for i in ann_idx]
    return out


def sample_class_shots(
    records: Sequence[dict],
    class_id: int,
    class_name: str,
    shots: int,
    seed: int,
    *,
    allow_partial: bool = True,
) -> List[dict]:
    """K shots of one class, each chosen image reduced to the class's sampled annotations.

    Args:
        records: dataset records (``category_id`` in 1..K).
        class_id: the contiguous label of the class (1..K).
        class_name: its name (seeds the generator, names the class in warnings).
        shots: K >= 1.
        seed: the few-shot split seed.
        allow_partial: complete a walk that falls short of K with part of one more image
            (step 3 of the module doc). False keeps whole images only (may give < K).

    Returns:
        New records (copies), in sampling order, holding ``shots`` annotations in total, or
        fewer with a :class:`FewShotWarning`.
    """
    if int(shots) != shots or shots < 1:
        raise ValueError(f"shots must be an integer >= 1, got {shots!r}")
    shots = int(shots)
    candidates = _class_instances(records, class_id)
    counts = [len(idx) for _, idx in candidates]
    available = sum(counts)
    rng = class_generator(seed, class_name)
    best, total = [], -1
    for _ in range(_MAX_WALKS if available >= shots else 1):
        chosen = _walk(rng.permutation(len(candidates)), counts, shots)
        if sum(counts[i] for i in chosen) > total:
            best, total = chosen, sum(counts[i] for i in chosen)
        if total == shots:
            break
    out = [_split_record(candidates[i][0], candidates[i][1]) for i in best]
    if total < shots and available >= shots and allow_partial:
        out.append(_partial_image(candidates, best, shots - total, rng, class_name, seed))
        total = shots
    if total < shots:
        warnings.warn(
            f"few-shot split seed={seed}: class {class_name!r} has {total} of the {shots} "
            f"requested shots ({available} usable instances in {len(candidates)} images; "
            "difficult/crowd boxes are not counted)",
            FewShotWarning,
            stacklevel=2,
        )
    return out


def _partial_image(candidates, chosen, need, rng, class_name, seed) -> dict:
    """The first ``need`` instances of the first unchosen image (by a fresh shuffle)."""
    taken = set(chosen)
    order = [int(i) for i in rng.permutation(len(candidates)) if int(i) not in taken]
    pick = next(i for i in order if len(candidates[i][1]) >= need)
    record, idx = candidates[pick]
    keep = idx[:need]
    warnings.warn(
        f"few-shot split seed={seed}: class {class_name!r} cannot reach the requested shots "
        f"with whole images; image {record['image_id']!r} contributes {need} of its "
        f"{len(idx)} instances, the other {len(idx) - need} stay unlabelled",
        FewShotWarning,
        stacklevel=3,
    )
    return _split_record(record, keep)


def sample_kshot(
    records: Sequence[dict],
    thing_classes: Sequence[str],
    shots: int,
    seed: int,
    *,
    classes: Optional[Sequence[str]] = None,
    allow_partial: bool = True,
) -> Dict[str, List[dict]]:
    """Per-class K-shot splits (TFA semantics, see the module doc).

    Args:
        records: dataset records.
        thing_classes: the dataset's class names (index i <-> label i+1).
        shots: K, instances per class.
        seed: the few-shot split seed (``FEWSHOT.SEED``).
        classes: names to sample (default: all of ``thing_classes``).
        allow_partial: see :func:`sample_class_shots`.

    Returns:
        {class name: records of that class's split}, in the order of ``classes``.
    """
    thing_classes = list(thing_classes)
    names = list(thing_classes if classes is None else classes)
    unknown = [c for c in names if c not in thing_classes]
    if unknown:
        raise ValueError(
            f"unknown class name(s) {unknown}; the dataset's classes are {thing_classes}"
        )
    return {
        name: sample_class_shots(
            records, thing_classes.index(name) + 1, name, shots, seed, allow_partial=allow_partial
        )
        for name in names
    }


def merge_class_splits(per_class: Dict[str, List[dict]]) -> List[dict]:
    """Union of per-class splits: one record per image with all its sampled annotations.

    Args:
        per_class: {class name: records} as returned by :func:`sample_kshot`.

    Returns:
        Records in first-appearance order (classes in dict order); an image chosen for
        several classes gets the annotations of each, in class order.
    """
    merged: Dict[object, dict] = {}
    for records in per_class.values():
        for record in records:
            key = (str(record["image_id"]), str(record["file_name"]))
            if key not in merged:
                merged[key] = {k: v for k, v in record.items() if k != "annotations"}
                merged[key]["annotations"] = []
            merged[key]["annotations"].extend(copy.deepcopy(record["annotations"]))
    return list(merged.values())


def build_fewshot_dataset(
    records: Sequence[dict],
    thing_classes: Sequence[str],
    shots: int,
    seed: int,
    *,
    classes: Optional[Sequence[str]] = None,
    allow_partial: bool = True,
) -> List[dict]:
    """The few-shot training set: :func:`sample_kshot` then :func:`merge_class_splits`."""
    per_class = sample_kshot(
        records, thing_classes, shots, seed, classes=classes, allow_partial=allow_partial
    )
    return merge_class_splits(per_class)


def short_classes(records: Sequence[dict], thing_classes: Sequence[str], shots: int
                  ) -> Dict[str, int]:
    """{class name: instances} for the classes with fewer than ``shots`` annotations in
    ``records`` (a K-shot set; every annotation counts).

    Args:
        records: records with ``category_id`` in 1..K.
        thing_classes: the K class names, label order.
        shots: K.
    """
    counts = {name: 0 for name in thing_classes}
    for record in records:
        for ann in record["annotations"]:
            counts[thing_classes[ann["category_id"] - 1]] += 1
    return {name: c for name, c in counts.items() if c < shots}
