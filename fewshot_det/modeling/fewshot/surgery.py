"""Class-count surgery: a base checkpoint's class-shaped tensors -> a new class list.

Shape glossary: K_s source classes, K_t target classes, D feature size.

The fine-tuning protocol (TFA's ``ckpt_surgery --method randinit``), driven by class names:

* rows of target classes that are *base* classes found in the source are copied;
* rows of *novel* classes (and of base classes the source lacks, with a warning) are
  initialised as a fresh layer would be;
* rows before the class rows (the background row of a (K+1)-way classifier) are kept.

Which tensors are class-shaped depends on the meta-architecture: each names its own in a
classmethod ``class_rows(state_dict, num_target_classes) -> [ClassRows]``, found through
``META_ARCH_REGISTRY`` by its ``MODEL.META_ARCHITECTURE`` name, so tools never branch on the
model type.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..registry import META_ARCH_REGISTRY, lookup

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
    # False when the dataset names no novel classes (a user's own set): a class the
    # checkpoint lacks is then simply new, not a base class gone missing
    novel_declared: bool = True

    def __str__(self) -> str:
        lines = [f"class surgery on {len(self.tensors)} tensors: kept the checkpoint's rows "
                 f"of {self.copied}, new rows for {self.initialised}"]
        if self.missing_base and self.novel_declared:
            lines.append(f"base classes {self.missing_base} are not in the checkpoint: "
                         f"initialised")
        return "; ".join(lines)


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


def meta_arch_class_rows(meta_architecture: Union[str, type]):
    """The ``class_rows`` classmethod of a meta-architecture class or registered name.

    Raises:
        ValueError: the name is not registered, or the class names no class rows.
    """
    arch = meta_architecture
    if isinstance(arch, str):
        arch = lookup(META_ARCH_REGISTRY, arch, "MODEL.META_ARCHITECTURE")
    class_rows = getattr(arch, "class_rows", None)
    if class_rows is None:
        raise ValueError(f"no class surgery for {arch.__name__}: it defines no classmethod "
                         f"class_rows(state_dict, num_classes) -> [ClassRows] naming its "
                         f"class-shaped tensors")
    return class_rows


def class_surgery(state_dict: Dict[str, Tensor], meta_architecture: Union[str, type],
                  src_classes: Optional[Sequence[str]], dst_classes: Sequence[str],
                  novel_classes: Sequence[str], *, seed: int = 0):
    """Move the class-shaped tensors of a state dict to a new class list.

    Args:
        state_dict: the base checkpoint's weights (our parameter names).
        meta_architecture: the model to be fine-tuned: its ``MODEL.META_ARCHITECTURE``
            name or its class; its ``class_rows`` names the tensors.
        src_classes: class names of the checkpoint's rows (None = unknown: kept in place
            when the counts match, else every class is initialised; both with a warning).
        dst_classes: the fine-tuning dataset's ``thing_classes``.
        novel_classes: its novel classes (always initialised).
        seed: of the initialisation (use FEWSHOT.SEED).
    Returns:
        (new state dict, SurgeryReport); tensors that are not class-shaped are shared.
    Raises:
        ValueError: an unknown meta-architecture, or one without ``class_rows``; a class
            list with a repeated name; ``src_classes`` not matching the checkpoint's rows.
    """
    class_rows = meta_arch_class_rows(meta_architecture)
    specs = [s for s in class_rows(state_dict, len(dst_classes)) if s.key in state_dict]
    report = SurgeryReport(tensors=[s.key for s in specs], novel_declared=bool(novel_classes))
    if not specs:
        logger.warning("class surgery: the checkpoint has no class-shaped tensor of a %s",
                       getattr(meta_architecture, "__name__", meta_architecture))
        return dict(state_dict), report
    _check_names(src_classes, dst_classes, state_dict, specs[0])
    src_classes = _source_names(src_classes, state_dict, specs[0], dst_classes)
    src_index = source_rows(src_classes, dst_classes, novel_classes, report)
    generator = torch.Generator().manual_seed(int(seed))
    out = dict(state_dict)
    for spec in specs:
        out[spec.key] = remap_class_rows(state_dict[spec.key], spec, src_index,
                                         generator=generator)
    if report.missing_base and report.novel_declared:
        logger.warning("class surgery: base classes %s are not in the checkpoint (its classes: "
                       "%s); their rows are initialised", report.missing_base, src_classes)
    logger.info("%s", report)
    return out, report


def _num_classes(state_dict, spec: ClassRows) -> int:
    return (state_dict[spec.key].shape[0] - spec.leading_rows) // spec.rows_per_class


def _check_names(src_classes, dst_classes, state_dict, spec: ClassRows) -> None:
    for what, names in (("checkpoint", src_classes or []), ("target", dst_classes)):
        repeated = sorted({n for n in names if list(names).count(n) > 1})
        if repeated:
            raise ValueError(f"class surgery: the {what} class list repeats {repeated}")
    if src_classes is not None and len(src_classes) != _num_classes(state_dict, spec):
        raise ValueError(f"class surgery: {spec.key} has {_num_classes(state_dict, spec)} "
                         f"class rows but the checkpoint names {len(src_classes)} classes "
                         f"{list(src_classes)}")


def _source_names(src_classes, state_dict, spec: ClassRows, dst_classes) -> List[str]:
    if src_classes is not None:
        return list(src_classes)
    num = _num_classes(state_dict, spec)
    if num == len(dst_classes):
        logger.warning("class surgery: the checkpoint does not name its classes; assuming its "
                       "%d rows are the dataset's classes in order", num)
        return list(dst_classes)
    logger.warning("class surgery: the checkpoint does not name its %d classes; every class "
                   "row is initialised", num)
    return []
