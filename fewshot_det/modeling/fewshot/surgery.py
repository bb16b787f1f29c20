"""Class-count surgery: a base checkpoint's class-shaped tensors -> a new class list.

Shape glossary: K_s source classes, K_t target classes, D feature size.

The fine-tuning protocol (TFA's ``ckpt_surgery --method randinit``), driven by class names:

* rows of target classes that are *base* classes found in the source are copied;
* rows of *novel* classes (and of base classes the source lacks, with a warning) are
  initialised as a fresh layer would be;
* rows before the class rows (the background row of a (K+1)-way classifier) are kept.

Which tensors are class-shaped depends on the meta-architecture; each registers a function
``fn(state_dict, num_target_classes) -> [ClassRows]`` in ``SURGERY_REGISTRY`` under its
``MODEL.META_ARCHITECTURE`` name, so tools never branch on the model type.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

PREDICTOR = "roi_heads.box_predictor."
INITS = ("normal", "zeros", "constant", "source_mean")


@dataclass(frozen=True)
class ClassRows:
    """A tensor of a state dict whose first dimension holds per-class rows.

    Attributes:
        key: its state-dict name.
        rows_per_class: rows of one class (4 for class-specific box deltas).
        leading_rows: rows kept as they are before the class rows (1 = background).
        init: how new rows start: "normal" (std), "zeros", "constant" (value) or
        "source_mean" (the mean of the copied classes' rows; zeros when none is copied).
        std, value: parameters of the initialisation.
    """

    key: str
    rows_per_class: int = 1
    leading_rows: int = 0
    init: str = "normal"
    std: float = 0.01
    value: float = 0.0


@dataclass
class SurgeryReport:
    """Which target classes were copied and which initialised, per class name."""

    copied: List[str] = field(default_factory=list)
    initialised: List[str] = field(default_factory=list)
    missing_base: List[str] = field(default_factory=list)  # base, but not in the source
    tensors: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"class surgery on {len(self.tensors)} tensors: copied {self.copied}, "
                 f"initialised {self.initialised}"]
        if self.missing_base:
            lines.append(f"base classes {self.missing_base} are not in the checkpoint: "
                         f"initialised")
        return "; ".join(lines)


SurgerySpec = Callable[[Dict[str, Tensor], int], List[ClassRows]]
SURGERY_REGISTRY: Dict[str, SurgerySpec] = {}


def register_surgery(meta_architecture: str):
    """Decorator: ``fn(state_dict, num_target_classes) -> [ClassRows]`` for a model type."""
    def wrap(fn: SurgerySpec) -> SurgerySpec:
        SURGERY_REGISTRY[meta_architecture] = fn
        return fn
    return wrap


def source_rows(src_classes: Sequence[str], dst_classes: Sequence[str],
                novel_classes: Sequence[str], report: Optional[SurgeryReport] = None
                ) -> List[Optional[int]]:
    """For every target class, the source class index to copy from, or None (initialise).

    Novel classes are never copied, even when the source has a class of that name: in the
    few-shot protocol novel knowledge must come from the K shots only.
    """
    index = {name: i for i, name in enumerate(src_classes)}
    novel = set(novel_classes)
    out = []
    for name in dst_classes:
        src = None if name in novel else index.get(name)
        if report is not None:
            (report.copied if src is not None else report.initialised).append(name)
            if src is None and name not in novel:
                report.missing_base.append(name)
        out.append(src)
    return out


def remap_class_rows(tensor: Tensor, rows: ClassRows, src_index: Sequence[Optional[int]], *,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """The tensor for the target classes (pure: ``tensor`` is not modified).

    Args:
        tensor: [leading + K_s * rows_per_class, ...].
        rows: the layout.
        src_index: per target class, its source class index or None (see ``source_rows``).
        generator: for the "normal" initialisation (reproducible surgery).
    Returns:
        [leading + K_t * rows_per_class, ...], same dtype and device.
    """
    lead, per = rows.leading_rows, rows.rows_per_class
    num_src = (tensor.shape[0] - lead) / per
    if num_src != int(num_src) or num_src < 0:
        raise ValueError(f"{rows.key}: {tensor.shape[0]} rows do not fit {lead} leading rows "
                         f"+ {per} per class")
    bad = [i for i in src_index if i is not None and not 0 <= i < num_src]
    if bad:
        raise ValueError(f"{rows.key}: source class indices {bad} out of range "
                         f"(the tensor has {int(num_src)} classes)")
    shape = (lead + per * len(src_index),) + tuple(tensor.shape[1:])
    out = _initial(shape, rows, generator).to(dtype=tensor.dtype, device=tensor.device)
    out[:lead] = tensor[:lead]
    body, src_body = out[lead:].unflatten(0, (-1, per)), tensor[lead:].unflatten(0, (-1, per))
    for k, src in enumerate(src_index):
        if src is not None:
            body[k] = src_body[src]  # a view of ``out``: writes the class's rows
    copied = [src for src in src_index if src is not None]
    if rows.init == "source_mean" and copied:
        mean = src_body[copied].mean(dim=0)
        for k, src in enumerate(src_index):
            if src is None:
                body[k] = mean
    return out


def _initial(shape, rows: ClassRows, generator) -> Tensor:
    if rows.init == "normal":
        return torch.randn(shape, generator=generator) * rows.std
    if rows.init in ("zeros", "source_mean"):
        return torch.zeros(shape)
    if rows.init == "constant":
        return torch.full(shape, float(rows.value))
    raise ValueError(f"{rows.key}: init must be one of {INITS}, got {rows.init!r}")


def class_surgery(state_dict: Dict[str, Tensor], meta_architecture: str,
                  src_classes: Optional[Sequence[str]], dst_classes: Sequence[str],
                  novel_classes: Sequence[str], *, seed: int = 0):
    """Apply the registered surgery of ``meta_architecture`` to a state dict.

    Args:
        state_dict: the base checkpoint's weights (our parameter names).
        meta_architecture: ``MODEL.META_ARCHITECTURE`` of the model to be fine-tuned.
        src_classes: class names of the checkpoint's rows (None = unknown: kept in place
            when the counts match, else every class is initialised; both with a warning).
        dst_classes: the fine-tuning dataset's ``thing_classes``.
        novel_classes: its novel classes (always initialised).
        seed: of the initialisation (use FEWSHOT.SEED).
    Returns:
        (new state dict, SurgeryReport); tensors that are not class-shaped are shared.
    Raises:
        ValueError: no surgery registered for the model type.
    """
    if meta_architecture not in SURGERY_REGISTRY:
        raise ValueError(f"no class surgery registered for MODEL.META_ARCHITECTURE "
                         f"{meta_architecture!r} (have {sorted(SURGERY_REGISTRY)}); register "
                         f"one with fewshot_det.modeling.fewshot.register_surgery")
    specs = [s for s in SURGERY_REGISTRY[meta_architecture](state_dict, len(dst_classes))
             if s.key in state_dict]
    report = SurgeryReport(tensors=[s.key for s in specs])
    if not specs:
        logger.warning("class surgery: the checkpoint has no class-shaped tensor of a %s",
                       meta_architecture)
        return dict(state_dict), report
    src_classes = _source_names(src_classes, state_dict, specs[0], dst_classes)
    src_index = source_rows(src_classes, dst_classes, novel_classes, report)
    generator = torch.Generator().manual_seed(int(seed))
    out = dict(state_dict)
    for spec in specs:
        out[spec.key] = remap_class_rows(state_dict[spec.key], spec, src_index,
                                         generator=generator)
    if report.missing_base:
        logger.warning("class surgery: base classes %s are not in the checkpoint (its classes: "
                       "%s); their rows are initialised", report.missing_base, src_classes)
    logger.info("%s", report)
    return out, report


def _source_names(src_classes, state_dict, spec: ClassRows, dst_classes) -> List[str]:
    if src_classes is not None:
        return list(src_classes)
    num = (state_dict[spec.key].shape[0] - spec.leading_rows) // spec.rows_per_class
    if num == len(dst_classes):
        logger.warning("class surgery: the checkpoint does not name its classes; assuming its "
                       "%d rows are the dataset's classes in order", num)
        return list(dst_classes)
    logger.warning("class surgery: the checkpoint does not name its %d classes; every class "
                   "row is initialised", num)
    return []


# ------------------------------------------------------------------ registered layouts
@register_surgery("GeneralizedRCNN")
def rcnn_class_rows(state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
    """Faster R-CNN: classifier rows (background first) and class-specific box deltas."""
    rows = [ClassRows(PREDICTOR + "cls_score.weight", leading_rows=1, std=0.01),
            ClassRows(PREDICTOR + "cls_score.bias", leading_rows=1, init="zeros")]
    bbox = state_dict.get(PREDICTOR + "bbox_pred.weight")
    if bbox is not None and bbox.shape[0] != 4:  # class-agnostic deltas have no class rows
        rows += [ClassRows(PREDICTOR + "bbox_pred.weight", rows_per_class=4, std=0.001),
                 ClassRows(PREDICTOR + "bbox_pred.bias", rows_per_class=4, init="zeros")]
    return rows


@register_surgery("SiameseRCNN")
def siamese_class_rows(state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
    """Siamese R-CNN: the predictor's class rows (background kept; a new class's residual
    row starts at zero, so its weight is exactly the one its support prototype gives),
    its box deltas (a new class starts from the mean of the copied classes' deltas, the
    regression a class given only as supports gets), and the prototype bank (an empty
    row = no prototype until supports or fine-tuning episodes give one)."""
    return [ClassRows(PREDICTOR + "cls_score.weight", leading_rows=1, init="zeros"),
            ClassRows(PREDICTOR + "bbox_pred.weight", rows_per_class=4, init="source_mean"),
            ClassRows(PREDICTOR + "bbox_pred.bias", rows_per_class=4, init="source_mean"),
            ClassRows("prototype_bank.rpn", init="zeros"),
            ClassRows("prototype_bank.head", init="zeros"),
            ClassRows("prototype_bank.count", init="zeros")]


@register_surgery("YOLOGrid")
def yolo_class_rows(state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
    """YOLO-grid: the class-probability conv (one row per class), new rows as a fresh head's
    (``yolo.head``: weight ~ N(0, 0.01^2), bias = the prior logit of 1 / (K + 1))."""
    from ..yolo.head import class_prior_logit

    return [ClassRows("head.cls_pred.weight", std=0.01),
            ClassRows("head.cls_pred.bias", init="constant",
                      value=class_prior_logit(num_classes))]
