"""Export is checked, not assumed: the exported model's detections against PyTorch's.

Two detection lists agree when every PyTorch detection has an exported one of the same
label, its box coordinates within ``BOX_RTOL`` of PyTorch's (relative, at least
``BOX_RTOL`` px) and its score within ``SCORE_ATOL``, and nothing is left over. onnxruntime's kernels sum in another order than
PyTorch's, so values differ in the last bits (1e-5 px measured, BENCHMARKS.md); a score
that lands on a threshold or ties with another could still flip one detection, which the
check then reports instead of hiding.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

BOX_RTOL = 1e-3
SCORE_ATOL = 1e-4
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ImageParity:
    shape: tuple
    reference: int  # PyTorch's detection count
    exported: int
    matched: int  # PyTorch's detections the export has, within the tolerances
    box_error: float  # of the matched: max |difference| / max(|PyTorch coordinate|, 1)
    score_error: float  # of the matched: max |difference|
    # of the unmatched: the largest px distance to the nearest exported box of its label
    unmatched_px: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reference == self.exported == self.matched


@dataclass
class ParityReport:
    images: List[ImageParity] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.images)

    def summary(self) -> str:
        lines = []
        for i in self.images:
            lines.append(f"  {i.shape[1]}x{i.shape[0]}: {i.reference} detections (PyTorch), "
                         f"{i.exported} (export), {i.matched} matched; box error "
                         f"{i.box_error:.1e}, score error {i.score_error:.1e}"
                         + (f"; the unmatched are {i.unmatched_px:.2g} px from the nearest "
                            f"box of their class" if i.matched < i.reference else "")
                         + f": {'ok' if i.ok else 'DIFFERENT'}")
        verdict = ("the export matches PyTorch" if self.ok else
                   "the export does NOT match PyTorch")
        return (f"{verdict} on {len(self.images)} image(s) (same label, boxes within "
                f"{BOX_RTOL:g} relative, scores within {SCORE_ATOL:g}):\n" + "\n".join(lines))


def compare(reference: dict, exported: dict, shape: tuple) -> ImageParity:
    """Parity of one image's two outputs ({"boxes", "scores", "labels"} tensors).

    Each PyTorch detection is matched to an unused exported one of the same label, score
    and box within the tolerances (the closest box): detections whose scores are equal
    within ``SCORE_ATOL`` may come in either order.
    """
    ref_boxes, exp_boxes = reference["boxes"].double(), exported["boxes"].double()
    ref_scores, exp_scores = reference["scores"].double(), exported["scores"].double()
    ref_labels, exp_labels = reference["labels"].long(), exported["labels"].long()
    used = torch.zeros(len(exp_boxes), dtype=torch.bool)
    box_error = score_error = unmatched_px = 0.0
    for i in range(len(ref_boxes)):
        errors = ((exp_boxes - ref_boxes[i]).abs() / ref_boxes[i].abs().clamp(min=1)).amax(1)
        score_diff = (exp_scores - ref_scores[i]).abs()
        fits = (~used & (exp_labels == ref_labels[i]) & (score_diff <= SCORE_ATOL)
                & (errors <= BOX_RTOL))
        if fits.any():
            j = int(torch.where(fits, errors, torch.full_like(errors, float("inf"))).argmin())
            used[j] = True
            box_error = max(box_error, float(errors[j]))
            score_error = max(score_error, float(score_diff[j]))
            continue
        px = (exp_boxes - ref_boxes[i]).abs().amax(1)[exp_labels == ref_labels[i]]
        unmatched_px = max(unmatched_px, float(px.min()) if len(px) else float("inf"))
    return ImageParity(tuple(shape), len(ref_boxes), len(exp_boxes), int(used.sum()),
                       box_error, score_error, unmatched_px)


def compare_predictors(reference, exported, images: List[np.ndarray]) -> ParityReport:
    """Run both predictors (``Predictor`` interface) on every image."""
    report = ParityReport()
    for image in images:
        report.images.append(compare(reference(image), exported(image), image.shape))
    return report


def check_files(path: Optional[str]) -> List[str]:
    """The image files of ``--check``: ``path`` itself, or the images in that folder.

    Raises:
        FileNotFoundError: nothing there, or a folder without images.
    """
    if not path:
        return []
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)
    ) if os.path.isdir(path) else []
    if not files:
        raise FileNotFoundError(f"--check {path}: no image file there")
    return files


def read_check_image(path: str, image_format: str) -> np.ndarray:
    """H x W x 3 uint8 in ``image_format`` order.

    A truncated file is refused before decoding (``data.image_format``): OpenCV would only
    print libjpeg's warning, return a partly grey image, and the check would compare
    detections on it and say "ok".

    Raises:
        ValueError: the file is truncated or cannot be decoded (naming it).
    """
    import cv2

    from ..data.image_format import truncation_problem

    problem = truncation_problem(path)
    if problem:
        raise ValueError(f"--check: {path} is truncated or corrupt ({problem})")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"--check: cannot read image {path} (not an image, or corrupt)")
    return image[:, :, ::-1].copy() if image_format == "RGB" else image


def check_images(path: Optional[str], cfg) -> List[np.ndarray]:
    """H x W x 3 uint8 images in INPUT.FORMAT order: those at ``path`` (a file or a folder,
    ``check_files``; each read by ``read_check_image``), else three noise images of
    different sizes and shapes around the test size."""
    if not path:
        side = cfg.INPUT.FIXED_SIZE if cfg.INPUT.RESIZE_MODE == "fixed_square" \
            else cfg.INPUT.MIN_SIZE_TEST
        rng = np.random.default_rng(0)
        shapes = [(side, side * 4 // 3), (side * 3 // 2, side), (side // 2 + 7, side // 2 + 31)]
        return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    return [read_check_image(f, cfg.INPUT.FORMAT) for f in check_files(path)]


def set_export_supports(predictor, spec: str) -> None:
    """Classes of a ``Predictor``'s model from examples: a support file (JSON,
    ``data.support_file``: any model ``Predictor.set_supports`` takes), or for a siamese
    model a prototype file (``SiameseRCNN.save_prototypes``) or a registered dataset name
    (its annotated objects, as few-shot evaluation encodes a K-shot split)."""
    from ..modeling import is_support_conditioned
    from ..utils.files import file_kind

    if os.path.isfile(spec) and file_kind(spec) == "json":
        from ..engine.predictor import supports_from_file

        predictor.set_supports(supports_from_file(spec, predictor.cfg.INPUT.FORMAT))
        return
    model = predictor.model
    if not is_support_conditioned(model):
        raise ValueError(f"--supports: {type(model).__name__} takes no supports (only "
                         f"SiameseRCNN does)")
    if os.path.isfile(spec):
        model.load_prototypes(spec)
        return
    from ..data import get_dataset
    from ..engine.fewshot import set_kshot_supports

    records, metadata = get_dataset(spec)
    set_kshot_supports(predictor.cfg, model, records, metadata)
