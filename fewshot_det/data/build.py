"""Data loaders for training and inference (the torch side of ``fewshot_det.data``)."""
from __future__ import annotations

import logging
import os
import warnings
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..utils.dist import dist_info
from . import get_dataset
from .catalog import Metadata
from .mapper import DatasetMapper
from .samplers import InferenceSampler, TrainingSampler

logger = logging.getLogger(__name__)


def get_detection_dataset(names: Sequence[str], *, check_images: bool = True,
                          box_policy: str = "clip", filter_empty: bool = False
                          ) -> Tuple[List[dict], Metadata]:
    """Concatenate datasets that share one class list; metadata of the first."""
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    all_records, metadata = [], None
    for name in names:
        records, meta = get_dataset(name, check_images=check_images, box_policy=box_policy)
        if metadata is not None and list(meta.thing_classes) != list(metadata.thing_classes):
            raise ValueError(f"datasets {names[0]!r} and {name!r} have different classes: "
                             f"{metadata.thing_classes} vs {meta.thing_classes}")
        metadata = metadata or meta
        all_records.extend(records)
    if filter_empty:
        before = len(all_records)
        all_records = [r for r in all_records if r["annotations"]]
        logger.info("removed %d images without boxes", before - len(all_records))
    if not all_records:
        raise ValueError(f"datasets {list(names)} hold no images")
    return all_records, metadata


class MapDataset(Dataset):
    """``dataset[(index, sample_seed)] = mapper(records[index], rng(sample_seed))``;
    a key with a third item, a batch seed, adds ``batch_rng=rng(batch_seed)``."""

    def __init__(self, records: List[dict], mapper):
        self.records, self.mapper = records, mapper

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key):
        index, seed, *batch = key
        rng = np.random.default_rng(seed)
        if not batch:
            return self.mapper(self.records[index], rng)
        return self.mapper(self.records[index], rng, batch_rng=np.random.default_rng(batch[0]))


def trivial_batch_collator(batch):
    return batch


def _worker_init(_):
    # Workers each get a share of the CPU already; threads inside them only contend.
    # (OpenCV's thread count is set in the parent, see _loader: calling cv2.setNumThreads
    # in a forked child whose parent had a live OpenCV thread pool deadlocks.)
    torch.set_num_threads(1)


def _loader(dataset, sampler, batch_size: int, num_workers: int, drop_last: bool):
    if num_workers > 0:
        # Workers are forked: OpenCV's thread pool must be shut down in the parent first.
        # With a live pool (e.g. the synthetic set was just drawn in this process), a
        # worker touching OpenCV's threading hangs forever on a lock of threads that did
        # not survive fork(). One OpenCV thread per worker is also what we want.
        cv2.setNumThreads(1)
    # A private generator: creating the iterator would otherwise draw from the global torch
    # RNG, shifting the model's random stream on resume (our sampler needs no torch RNG).
    return DataLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=drop_last,
                      num_workers=num_workers, collate_fn=trivial_batch_collator,
                      worker_init_fn=_worker_init, persistent_workers=False,
                      generator=torch.Generator().manual_seed(0))


def build_train_loader(records: List[dict], mapper, *, total_batch_size: int, seed: int,
                       num_workers: int = 0, start_iter: int = 0,
                       batch_rng: bool = False) -> DataLoader:
    """Endless loader of lists of model inputs; batch i is the same on resume.
    ``batch_rng``: the mapper also gets a generator shared by the batch (``batch_rng=``)."""
    rank, world = dist_info()
    if total_batch_size % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH {total_batch_size} must be divisible by the "
                         f"number of processes {world}")
    sampler = TrainingSampler(len(records), seed=seed, start=start_iter * total_batch_size,
                              rank=rank, world_size=world,
                              batch_size=total_batch_size if batch_rng else 0)
    return _loader(MapDataset(records, mapper), sampler, total_batch_size // world,
                   num_workers, drop_last=True)


def build_test_loader(records: List[dict], mapper, *, num_workers: int = 0,
                      batch_size: int = 1) -> DataLoader:
    """Each record once, in order (this rank's contiguous share)."""
    rank, world = dist_info()
    sampler = InferenceSampler(len(records), rank=rank, world_size=world)
    return _loader(MapDataset(records, mapper), sampler, batch_size, num_workers,
                   drop_last=False)


def apply_class_split(cfg, metadata: Metadata) -> Metadata:
    """Set ``metadata.base_classes / novel_classes`` from ``FEWSHOT.*`` when configured
    (a dataset's own declared split, e.g. the synthetic set's, is kept otherwise)."""
    from .fewshot import resolve_class_split

    f = cfg.FEWSHOT
    if f.SPLIT or f.BASE_CLASSES or f.NOVEL_CLASSES:
        base, novel = resolve_class_split(metadata.thing_classes, f.SPLIT, f.BASE_CLASSES,
                                          f.NOVEL_CLASSES)
        metadata.set(base_classes=list(base), novel_classes=list(novel))
    return metadata


def training_records(cfg) -> Tuple[List[dict], Metadata]:
    """The training records ``cfg`` describes: ``DATASETS.TRAIN`` with the class split
    applied, novel-class boxes dropped for few-shot base training (``FEWSHOT.TRAIN_CLASSES``
    base) and the K-shot subset when ``FEWSHOT.SHOTS`` > 0 (:func:`kshot_records`). Returns
    (records, metadata)."""
    records, metadata = get_detection_dataset(
        cfg.DATASETS.TRAIN, check_images=cfg.DATASETS.CHECK_IMAGES,
        box_policy=cfg.DATASETS.BOX_POLICY,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    apply_class_split(cfg, metadata)
    from .episodes import restrict_to_classes, training_classes

    keep = training_classes(cfg, metadata)
    if keep is not None:
        records = restrict_to_classes(records, metadata.thing_classes, keep)
    if cfg.FEWSHOT.SHOTS > 0:
        records = kshot_records(cfg, records, metadata)
    return records, metadata


def fewshot_split_dir(cfg) -> str:
    """The folder K-shot split files are read from and written to: ``FEWSHOT.SPLIT_DIR``,
    by default ``OUTPUT_DIR/splits``."""
    return cfg.FEWSHOT.SPLIT_DIR or os.path.join(cfg.OUTPUT_DIR, "splits")


def kshot_records(cfg, records: List[dict], metadata: Metadata) -> List[dict]:
    """The K-shot subset (``FEWSHOT.SHOTS``, split seed ``FEWSHOT.SEED``) of ``records``,
    read from the split files in :func:`fewshot_split_dir`, or sampled and written there.

    The sampler's warnings are logged; classes short of K instances are reported
    (:func:`warn_short_classes`).
    """
    from .fewshot import FewShotWarning, fewshot_records

    shots, seed = cfg.FEWSHOT.SHOTS, cfg.FEWSHOT.SEED
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewShotWarning)
        kshot = fewshot_records(records, metadata, shots, seed,
                                split_dir=fewshot_split_dir(cfg))
    for w in caught:
        logger.warning("%s", w.message)
    logger.info("K-shot training set: %d shots/class, split seed %d, %d images", shots, seed,
                len(kshot))
    warn_short_classes(kshot, metadata, shots, seed)
    return kshot


def warn_short_classes(kshot: List[dict], metadata: Metadata, shots: int, seed: int
                       ) -> List[str]:
    """Report every class with fewer than ``shots`` instances in the K-shot ``kshot``:
    loudly, with a ``FewShotWarning``, when it is novel (its nAP is meaningless for this
    seed), in the log when it is a base class. Returns the short novel classes."""
    from .fewshot import FewShotWarning, short_classes

    novel = set(metadata.get("novel_classes") or [])
    short_novel = []
    for name, count in short_classes(kshot, metadata.thing_classes, shots).items():
        msg = (f"few-shot split seed {seed}: {'novel' if name in novel else 'base'} class "
               f"{name!r} has only {count} of the {shots} requested instances")
        if name in novel:
            short_novel.append(name)
            logger.warning("!" * 80 + "\n%s\n" + "!" * 80, msg)
            warnings.warn(msg, FewShotWarning, stacklevel=3)
        else:
            logger.warning("%s", msg)
    return short_novel


def build_train_loader_from_config(cfg, start_iter: int = 0,
                                   mapper: Optional[DatasetMapper] = None,
                                   training_set: Optional[Tuple[List[dict], Metadata]] = None):
    """(loader, metadata) for ``training_set`` (records, metadata) when given (the dataset is
    then not read again), else for those of :func:`training_records`."""
    records, metadata = training_set if training_set is not None else training_records(cfg)
    mapper = mapper or DatasetMapper.from_config(cfg, is_train=True)
    if cfg.FEWSHOT.EPISODE.ENABLED:  # support-conditioned models: N-way K-shot episodes
        from .episodes import EpisodicMapper

        mapper = EpisodicMapper.from_config(cfg, mapper, records)
    loader = build_train_loader(records, mapper, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                seed=cfg.SEED, num_workers=cfg.DATALOADER.NUM_WORKERS,
                                start_iter=start_iter, batch_rng=cfg.INPUT.SCALE_PER_BATCH)
    return loader, metadata


def build_test_loader_from_config(cfg, dataset_name: str,
                                  mapper: Optional[DatasetMapper] = None):
    """(loader, records, metadata) for one test dataset."""
    records, metadata = get_detection_dataset(
        [dataset_name], check_images=cfg.DATASETS.CHECK_IMAGES, box_policy="keep")
    apply_class_split(cfg, metadata)
    mapper = mapper or DatasetMapper.from_config(cfg, is_train=False)
    loader = build_test_loader(records, mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)
    return loader, records, metadata
