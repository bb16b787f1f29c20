"""Few-shot fine-tuning over split seeds (tools/finetune_fewshot.py).

For each split seed s (``FEWSHOT.SEED``, separate from the training ``SEED``):

    OUTPUT_DIR/splits/seed{s}/...  the K-shot split, sampled once (or read: TFA files work)
    OUTPUT_DIR/seed{s}/            a fresh training run (own optimizer, schedule, iteration
                                   counter) from MODEL.WEIGHTS after class surgery, then
                                   the evaluation; ``results.json`` holds its metrics
    OUTPUT_DIR/summary.json        {"shots", "seeds", "metrics": {name: {"mean", "std",
                                   "ci95", "values"}}, ...}

A seed reads the training dataset once: its K-shot records (``data.build.training_records``,
which also warns about classes short of K) feed both the training loop and the support
crops. Class surgery happens in memory (``modeling.fewshot.class_surgery`` with the rows
the meta-architecture's ``class_rows`` names, then ``checkpoint.load_state``), so no
surgered file is written.
Nothing here branches on the meta-architecture's name; what a model can do it declares
(``modeling.Detector``): new classes without training come from the K-shot boxes as
support prototypes (support-conditioned models) or as imprinted rows of a cosine
classifier (TFA models); fine-tuning on cached RoI features needs a model that
``caches_roi_features``. The statistics over seeds (TFA's protocol: mean and a t-based 95 % confidence interval of
the mean) live in ``evaluation.seeds``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.build import fewshot_split_dir, training_records
from ..data.fewshot import FewShotWarning
from ..evaluation.seeds import format_summary, summarize
from ..utils.files import atomic_write_text
from .checkpoint import unwrap
from .defaults import resolve_device, seed_all

logger = logging.getLogger(__name__)


def warn_if_no_novel_ap(metrics: Dict[str, float], where: str) -> bool:
    """Warn loudly when novel AP is exactly 0: usually a surgery or label-mapping bug.

    Returns:
        True when the warning was given.
    """
    zero = [k for k in ("nAP", "nAP50") if metrics.get(k) == 0]
    if not zero:
        return False
    msg = (f"{where}: {' and '.join(zero)} = 0: no novel-class object was detected. This is "
           "the classic class-surgery / label-mapping bug: check that MODEL.WEIGHTS is the "
           "base checkpoint, that its classes (saved in the checkpoint) match the dataset's "
           "names, that the novel classes are in DATASETS.TRAIN's K-shot split, and that the "
           "model trained long enough (SOLVER.MAX_ITER).")
    logger.warning("!" * 80 + "\n%s\n" + "!" * 80, msg)
    warnings.warn(msg, FewShotWarning, stacklevel=2)
    return True


# -------------------------------------------------------------------- data and weights
def seed_config(cfg, shots: int, seed: int):
    """``cfg`` for one split seed: FEWSHOT.SHOTS / SEED set, its own OUTPUT_DIR/seed{s},
    split files in ``cfg``'s split folder (``data.build.fewshot_split_dir``: shared by the
    seeds, so fixed here before OUTPUT_DIR changes)."""
    out = cfg.clone()
    out.defrost()
    out.FEWSHOT.SHOTS = int(shots)
    out.FEWSHOT.SEED = int(seed)
    out.FEWSHOT.SPLIT_DIR = fewshot_split_dir(cfg)
    out.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, f"seed{seed}")
    out.freeze()
    return out


def load_with_surgery(cfg, metadata, model: torch.nn.Module, path: str):
    """Load ``path`` into ``model`` after class surgery to ``metadata``'s classes.

    The surgery runs in memory and ``checkpoint.load_state`` loads its result with the
    checks and the report of ``load_weights``; nothing is written.

    Returns:
        (LoadReport, SurgeryReport)
    """
    from ..checkpoint import convert, load_state, read_weights
    from ..checkpoint.class_names import layout_class_names, saved_class_names
    from ..modeling.fewshot import class_surgery

    fmt, converted = convert(read_weights(path))
    state = {name: tensor for _, name, tensor in converted}
    classes = list(metadata.thing_classes)
    source_classes = saved_class_names(path) or layout_class_names(fmt, state)
    new, report = class_surgery(state, type(unwrap(model)), source_classes, classes,
                                list(metadata.get("novel_classes") or []), seed=cfg.FEWSHOT.SEED)
    source = f"{path} after class surgery to {len(classes)} classes"
    return load_state(model, new, source=source, format=fmt), report


def freeze_parameters(model: torch.nn.Module, patterns: Sequence[str]) -> List[str]:
    """Freeze every parameter whose name matches none of ``patterns`` (regexes).

    Batch-norm statistics are not parameters: freeze BN stages with FREEZE_AT.

    Returns:
        the names left trainable (all trainable ones when ``patterns`` is empty).
    """
    trainable = []
    for name, p in model.named_parameters():
        if patterns and not any(re.search(pat, name) for pat in patterns):
            p.requires_grad_(False)
        if p.requires_grad:
            trainable.append(name)
    if patterns and not trainable:
        raise ValueError(f"FEWSHOT.FINETUNE.TRAINABLE {list(patterns)} matches no trainable "
                         f"parameter")
    return trainable


# ------------------------------------------------------------------------- one seed
def _first_test_metrics(cfg, all_metrics: Dict[str, Dict]) -> Dict[str, float]:
    name = cfg.DATASETS.TEST[0]
    return {k: v for k, v in all_metrics[name].items() if isinstance(v, (int, float))}


def _write_results(cfg, metrics: Dict[str, float], mode: str) -> None:
    """The seed's config.yaml, then results.json (the "finished" mark ``finished_seed``
    reads), each written atomically: a killed run leaves no partial file."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    results = {"shots": cfg.FEWSHOT.SHOTS, "seed": cfg.FEWSHOT.SEED, "mode": mode,
               "dataset": cfg.DATASETS.TEST[0], "metrics": metrics}
    for name, text in (("config.yaml", cfg.dump()),
                       ("results.json", json.dumps(results, indent=1))):
        atomic_write_text(os.path.join(cfg.OUTPUT_DIR, name), text)


def config_differences(path: str, cfg) -> List[str]:
    """"KEY saved -> current" for the keys where the config saved at ``path`` and ``cfg``
    differ (``engine.resume_config.config_changes``); one entry when there is no file."""
    from .resume_config import config_changes

    if not os.path.isfile(path):
        return [f"no {os.path.basename(path)}"]
    with open(path) as f:
        changes = config_changes(f.read(), cfg.dump())
    return [f"{key} {old} -> {new}" for key, (old, new) in changes.items()]


def finished_seed(cfg, mode: str) -> Optional[Dict[str, float]]:
    """The metrics of a finished run of this seed (``cfg`` a ``seed_config``) in its
    OUTPUT_DIR, or None when there is none.

    Raises:
        ValueError: the finished run used another config or mode (reusing its numbers
            would mix two experiments in one summary).
    """
    path = os.path.join(cfg.OUTPUT_DIR, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        results = json.load(f)
    changed = config_differences(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg)
    if results.get("mode") != mode or changed:
        what = (f"mode {results.get('mode')!r}, not {mode!r}" if results.get("mode") != mode
                else "another config (" + "; ".join(changed[:4]) + ")")
        raise ValueError(f"--resume: the finished run in {cfg.OUTPUT_DIR} used {what}; use "
                         f"another OUTPUT_DIR or remove it")
    return results["metrics"]


def finetune_seed(cfg, resume: bool = False, overwrite: bool = False) -> Dict[str, float]:
    """Fine-tune from MODEL.WEIGHTS on the K-shot split of ``cfg`` (a ``seed_config``) and
    evaluate; returns the first test dataset's metrics. ``resume``: continue from the
    seed's last checkpoint when it has one; ``overwrite``: see ``train``."""
    from ..modeling import build_model, is_support_conditioned
    from .base_labels import label_base_objects
    from .train_loop import train

    records, metadata = training_records(cfg)
    records = label_base_objects(cfg, records, metadata)
    seed_all(cfg.SEED)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    trainable = freeze_parameters(model, list(cfg.FEWSHOT.FINETUNE.TRAINABLE))
    logger.info("fine-tuning %d parameter tensors (%d elements)", len(trainable),
                sum(p.numel() for p in model.parameters() if p.requires_grad))

    def load(m, path):
        loaded, surgery = load_with_surgery(cfg, metadata, m, path)
        calibrate_kshot(cfg, m, records, metadata, surgery.initialised)
        if cfg.FEWSHOT.FINETUNE.INIT_PROTOTYPES and is_support_conditioned(m):
            set_kshot_supports(cfg, m, records, metadata)
        elif cfg.FEWSHOT.FINETUNE.NOVEL_INIT == "imprint" and not is_support_conditioned(m):
            if unwrap(m).cosine_classifier() is not None:
                imprint_kshot(cfg, m, records, metadata,
                              imprint_targets(cfg, surgery, metadata))
            else:  # a linear classifier or a one-stage model: nothing to imprint
                logger.info("new class rows start as class surgery set them (imprinting "
                            "needs MODEL.ROI_BOX_HEAD.PREDICTOR CosineSimOutputLayers)")
        return loaded, surgery

    source = None
    if cfg.FEWSHOT.FINETUNE.CACHE_ROI_FEATURES and cached_finetune_applies(model):
        from .roi_cache import CachedTrainingSource

        logger.info("only the box predictor (and the box head's last layers) train: "
                    "fine-tuning on cached RoI features (FEWSHOT.FINETUNE.CACHE_ROI_FEATURES)")
        source = CachedTrainingSource(cfg, model, records, metadata.thing_classes)
    metrics = _first_test_metrics(cfg, train(cfg, model, resume=resume, overwrite=overwrite,
                                             load_weights=load,
                                             training_set=(records, metadata), source=source))
    _write_results(cfg, metrics, "finetune")
    return metrics


def set_kshot_supports(cfg, model, records: Sequence[dict], metadata) -> List[int]:
    """Encode every K-shot instance of the novel classes (all classes when none is novel)
    and set those classes' prototypes in ``model``; returns their class ids."""
    from ..data.episodes import SupportCropper, build_support_set

    names = list(metadata.get("novel_classes") or []) or list(metadata.thing_classes)
    ids = [list(metadata.thing_classes).index(n) + 1 for n in names]
    supports = build_support_set(records, SupportCropper.from_config(cfg), ids,
                                 min_box_size=cfg.FEWSHOT.SUPPORT.MIN_BOX_SIZE)
    set_ids = model.set_supports(supports["images"], supports["boxes"], supports["labels"])
    logger.info("class prototypes set from %d K-shot support crops: %s", len(supports["labels"]),
                [metadata.thing_classes[i - 1] for i in set_ids])
    return set_ids


def imprint_kshot(cfg, model, records: Sequence[dict], metadata,
                  class_names: Sequence[str]) -> List[str]:
    """Imprint the cosine rows of ``class_names`` from their K-shot boxes
    (``modeling.fewshot.imprint``): each image at the test size, no training; returns
    the names imprinted."""
    from ..data.mapper import DatasetMapper
    from ..data.transforms import transforms_from_config
    from ..modeling.fewshot.imprint import (cosine_predictor, example_box_features,
                                            imprint_rows, mean_direction)

    cosine_predictor(unwrap(model))  # fail before reading any image
    names = list(metadata.thing_classes)
    ids = {names.index(n) + 1 for n in class_names}
    mapper = DatasetMapper(transforms=transforms_from_config(cfg, is_train=False),
                           image_format=cfg.INPUT.FORMAT,
                           use_difficult=cfg.DATASETS.TRAIN_USE_DIFFICULT,
                           keep_annotations=True)
    rng = np.random.default_rng(0)  # the test transforms draw nothing
    wanted = [r for r in records if any(a["category_id"] in ids for a in r["annotations"])]
    examples: Dict[int, list] = {}
    around = []
    for start in range(0, len(wanted), 4):
        batch = [mapper(r, rng) for r in wanted[start:start + 4]]
        per_class, proposals = example_box_features(unwrap(model), batch)
        for k, feats in per_class.items():
            examples.setdefault(k, []).append(feats)
        around.append(proposals)
    centre = mean_direction(torch.cat(around)) \
        if cfg.FEWSHOT.FINETUNE.IMPRINT_CENTRE and around else None
    done = imprint_rows(unwrap(model), examples, sorted(ids), centre)
    imprinted = [names[k - 1] for k in done]
    logger.info("imprinted the classifier rows of %s from %d K-shot boxes (no training)",
                imprinted, sum(len(f) for k in done for f in examples[k]))
    return imprinted


def calibrate_kshot(cfg, model, records: Sequence[dict], metadata,
                    class_names: Sequence[str]) -> List[str]:
    """Set the calibration prototypes (FEWSHOT.CALIBRATION) of ``class_names`` from their
    K-shot boxes in ``records``; returns the names set (none without a calibration)."""
    from ..data.mapper import image_to_tensor, read_image

    calibration = getattr(unwrap(model), "calibration", None)
    if calibration is None or not class_names:
        return []
    names = list(metadata.thing_classes)
    ids = {names.index(n) + 1: n for n in class_names}

    def examples():
        for record in records:
            anns = [a for a in record["annotations"] if a["category_id"] in ids]
            if anns:
                yield (image_to_tensor(read_image(record["file_name"], cfg.INPUT.FORMAT)),
                       torch.tensor([a["bbox"] for a in anns], dtype=torch.float32),
                       [a["category_id"] for a in anns])

    done = calibration.set_prototypes(examples())
    logger.info("calibration prototypes of %s from %d K-shot boxes (FEWSHOT.CALIBRATION, "
                "alpha %.2f)", [ids[k] for k in done], sum(done.values()), calibration.alpha)
    return [ids[k] for k in done]


def cached_finetune_applies(model) -> bool:
    """RoI features can be cached: one process, a model that declares it
    (``Detector.caches_roi_features``), and only its box predictor trains, with the box
    head's last layers or not (``roi_cache.cached_head_layers``)."""
    from .comm import get_world_size
    from .roi_cache import cached_head_layers

    m = unwrap(model)
    return (get_world_size() == 1 and m.caches_roi_features()
            and cached_head_layers(m) is not None)


def support_only_seed(cfg) -> Dict[str, float]:
    """Evaluate MODEL.WEIGHTS with the new classes taken from the K-shot split without any
    training: encoded as supports (support-conditioned models), or imprinted into the
    cosine classifier (TFA models: the rows class surgery initialised)."""
    from ..modeling import build_model, is_support_conditioned
    from .train_loop import evaluate_model

    records, metadata = training_records(cfg)
    seed_all(cfg.SEED)
    model = build_model(cfg).to(resolve_device(cfg.MODEL.DEVICE))
    surgery = load_with_surgery(cfg, metadata, model, cfg.MODEL.WEIGHTS)[1] \
        if cfg.MODEL.WEIGHTS else None
    if surgery is not None:
        calibrate_kshot(cfg, model, records, metadata, surgery.initialised)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    if is_support_conditioned(model):
        set_kshot_supports(cfg, model, records, metadata)
        model.save_prototypes(os.path.join(cfg.OUTPUT_DIR, "prototypes.pth"))
    else:
        imprint_kshot(cfg, model, records, metadata, imprint_targets(cfg, surgery, metadata))
        torch.save({"model": model.state_dict(),
                    "extra": {"thing_classes": list(metadata.thing_classes)}},
                   os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    metrics = _first_test_metrics(cfg, evaluate_model(cfg, model))
    _write_results(cfg, metrics, "support_only")
    return metrics


def imprint_targets(cfg, surgery, metadata) -> List[str]:
    """The classes whose rows are imprinted: with ``FEWSHOT.FINETUNE.IMPRINT_CLASSES``
    "new", those class surgery initialised (novel, or absent from the checkpoint); with
    "all", or when there was no surgery, every class."""
    if cfg.FEWSHOT.FINETUNE.IMPRINT_CLASSES == "all" or surgery is None:
        return list(metadata.thing_classes)
    return list(surgery.initialised)


# ------------------------------------------------------------------------ all seeds
def run_fewshot(cfg, shots: int, seeds: Sequence[int], *, support_only: bool = False,
                resume: bool = False, overwrite: bool = False) -> Dict[str, object]:
    """Run every seed, write ``OUTPUT_DIR/summary.json``, log the table; return the summary.

    ``resume`` (an interrupted run started again): a seed with a finished run of the same
    config is read back, not re-run; an unfinished one continues from its last checkpoint.

    Raises:
        ValueError: K < 1, no test dataset, or base-only training data.
    """
    if int(shots) < 1:
        raise ValueError(f"--shots / FEWSHOT.SHOTS must be >= 1, got {shots}")
    if not cfg.DATASETS.TEST:
        raise ValueError("few-shot fine-tuning evaluates on DATASETS.TEST, which is empty")
    if cfg.FEWSHOT.TRAIN_CLASSES != "all":
        raise ValueError(f"fine-tuning trains on base and novel classes: FEWSHOT.TRAIN_CLASSES "
                         f"must be 'all', got {cfg.FEWSHOT.TRAIN_CLASSES!r}")
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: fine-tuning starts from random weights, not "
                       "from a base checkpoint")
    mode = "support_only" if support_only else "finetune"
    per_seed = []
    for i, seed in enumerate(seeds):
        scfg = seed_config(cfg, shots, seed)
        logger.info("=== %d-shot %s, split seed %d (%d/%d) -> %s", shots, mode, seed, i + 1,
                    len(seeds), scfg.OUTPUT_DIR)
        metrics = finished_seed(scfg, mode) if resume else None
        if metrics is not None:
            logger.info("seed %d: finished before, results read from %s", seed,
                        os.path.join(scfg.OUTPUT_DIR, "results.json"))
        elif support_only:
            metrics = support_only_seed(scfg)
        else:
            metrics = finetune_seed(scfg, resume=resume, overwrite=overwrite)
        warn_if_no_novel_ap(metrics, f"{shots}-shot seed {seed}")
        per_seed.append(metrics)
    summary = summarize(shots, seeds, per_seed, mode=mode)
    summary["dataset"] = cfg.DATASETS.TEST[0]
    summary["per_seed"] = {str(s): m for s, m in zip(seeds, per_seed)}
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    logger.info("summary (%s):\n%s", os.path.join(cfg.OUTPUT_DIR, "summary.json"),
                format_summary(summary))
    return summary
