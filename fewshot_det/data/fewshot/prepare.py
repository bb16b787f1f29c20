"""Sample and write the TFA split files of a dataset for several K and seeds (the body of
``tools/prepare_fewshot_splits.py``). No torch here."""
from typing import Dict, List, Optional, Sequence

from .kshot import merge_class_splits, sample_kshot
from .tfa_files import (_meta, find_split_file, load_class_splits, resolve_split_format,
                        write_class_splits)

__all__ = ["prepare_fewshot_splits", "fewshot_records"]


def prepare_fewshot_splits(
    records: Sequence[dict],
    metadata,
    shots: Sequence[int],
    seeds: Sequence[int],
    output_dir: str,
    *,
    fmt: str = "auto",
    classes: Optional[Sequence[str]] = None,
) -> List[Dict[str, object]]:
    """Write ``output_dir/seed{s}/<TFA file>`` for every seed, K and class.

    Args:
        records: the dataset's records (usually its training split).
        metadata: its metadata (``thing_classes``, id map, ``evaluator_type``).
        shots: the values of K, e.g. ``[1, 2, 3, 5, 10]``.
        seeds: the split seeds, e.g. ``[0, 1, 2]``.
        output_dir: the split folder (``FEWSHOT.SPLIT_DIR``).
        fmt: "voc", "coco" or "auto" (COCO files for COCO datasets, else VOC).
        classes: class names to sample (default: all classes, base and novel, as TFA).

    Returns:
        One summary row per (seed, K, class): ``seed, shots, class, images, instances, path``.
        A class short of K instances shows it in ``instances`` (and warned while sampling).
    """
    fmt = resolve_split_format(fmt, metadata)
    thing_classes = list(_meta(metadata, "thing_classes"))
    rows = []
    for seed in seeds:
        for k in shots:
            per_class = sample_kshot(records, thing_classes, int(k), int(seed), classes=classes)
            paths = write_class_splits(per_class, output_dir, int(k), int(seed), fmt, metadata)
            for (name, recs), path in zip(per_class.items(), paths):
                rows.append({
                    "seed": int(seed), "shots": int(k), "class": name, "images": len(recs),
                    "instances": sum(len(r["annotations"]) for r in recs), "path": path,
                })
    return rows


def fewshot_records(
    records: Sequence[dict],
    metadata,
    shots: int,
    seed: int,
    *,
    split_dir: str = "",
    fmt: str = "auto",
    classes: Optional[Sequence[str]] = None,
) -> List[dict]:
    """The K-shot training set of (dataset, K, seed), read from split files when present.

    When every class has a split file in ``split_dir`` (either format, either seed layout)
    they are read, so TFA's published splits or a previous run's are used as they are.
    Otherwise the splits are sampled and, if ``split_dir`` is given, written there, which
    records the experiment's exact data next to its outputs.

    Args:
        records: the full training records.
        metadata: their metadata.
        shots, seed: ``FEWSHOT.SHOTS`` (>= 1) and ``FEWSHOT.SEED``.
        split_dir: ``FEWSHOT.SPLIT_DIR`` ("" = neither read nor write).
        fmt: format written when sampling ("auto", "voc" or "coco").
        classes: class names (default: all ``thing_classes``, TFA's base + novel setting).

    Returns:
        Records (the union of the class splits), ``category_id`` in 1..K of the dataset.
    """
    names = list(_meta(metadata, "thing_classes")) if classes is None else list(classes)
    if split_dir and all(_has_split(split_dir, n, shots, seed) for n in names):
        per_class = load_class_splits(split_dir, records, metadata, shots, seed, classes=names)
    else:
        per_class = sample_kshot(records, _meta(metadata, "thing_classes"), shots, seed,
                                 classes=names)
        if split_dir:
            write_class_splits(per_class, split_dir, shots, seed, fmt, metadata)
    return merge_class_splits(per_class)


def _has_split(split_dir: str, name: str, shots: int, seed: int) -> bool:
    for fmt in ("voc", "coco"):
        try:
            find_split_file(split_dir, fmt, name, shots, seed)
            return True
        except FileNotFoundError:
            pass
    return False
