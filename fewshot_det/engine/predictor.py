"""``Predictor``: the model for one image at a time, as an application uses it.

    cfg = fewshot_det.get_cfg(); cfg.merge_from_file("configs/...yaml")
    cfg.MODEL.WEIGHTS = "output/model_final.pth"
    predictor = fewshot_det.Predictor(cfg)
    out = predictor(cv2.imread("image.jpg"))     # H x W x 3 uint8, INPUT.FORMAT order
    out["boxes"], out["scores"], out["labels"], out["class_names"]

A support-conditioned model (SiameseRCNN) also takes examples of classes at inference time,
including classes it was never trained on:

    predictor = fewshot_det.Predictor(cfg, supports={"bird_nest": [(img1, [x1, y1, x2, y2]),
                                                                   (img2, box2)]})
    predictor.set_supports({"insulator": [(img3, box3)]})   # add / replace classes later
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import num_classes, num_classes_key, set_num_classes
from .defaults import resolve_device
from .slicing import image_detector

# {class name: [(H x W x 3 uint8 image, box [x1, y1, x2, y2] in its pixels), ...]}
SupportExamples = Dict[str, Sequence[Tuple[np.ndarray, Sequence[float]]]]


def _class_names_from(cfg, weights_path: str) -> Optional[List[str]]:
    """The checkpoint's class names (``checkpoint.class_names``: saved in ours, COCO's for
    torchvision / detectron2 COCO models), else the config's datasets' (if readable)."""
    if weights_path:
        from ..checkpoint.class_names import checkpoint_class_names

        names = checkpoint_class_names(weights_path)
        if names:
            return names
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        try:
            from ..data import get_dataset

            return list(get_dataset(name, check_images=False, box_policy="keep")[1].thing_classes)
        except Exception:
            continue
    return None


class Predictor:
    """Loads ``MODEL.WEIGHTS`` into the configured model, in eval mode on MODEL.DEVICE."""

    def __init__(self, cfg, class_names: Optional[List[str]] = None,
                 supports: Optional[SupportExamples] = None):
        from ..checkpoint import load_weights
        from ..modeling import build_model

        self.cfg = cfg.clone()
        self.class_names = class_names or _class_names_from(cfg, cfg.MODEL.WEIGHTS)
        if num_classes(self.cfg) == -1:
            if not self.class_names:
                raise ValueError(f"{num_classes_key(self.cfg)} is -1 and no class names were "
                                 "found (checkpoint, DATASETS or class_names=...)")
            self.cfg.defrost()
            set_num_classes(self.cfg, len(self.class_names))
        self.device = resolve_device(self.cfg.MODEL.DEVICE)
        self.model = build_model(self.cfg).to(self.device).eval()
        if self.cfg.MODEL.WEIGHTS:
            load_weights(self.model, self.cfg.MODEL.WEIGHTS)
        self.detect = image_detector(self.cfg, self.model)
        if supports:
            self.set_supports(supports)

    def set_supports(self, supports: SupportExamples) -> None:
        """Give example objects of classes, by name (support-conditioned models only).

        Each example is cropped around its box with context (``FEWSHOT.SUPPORT.*``) and
        encoded once; the class prototypes are cached in the model. A name that is not
        one of ``class_names`` adds a class.

        Args:
            supports: {class name: [(H x W x 3 uint8 image in INPUT.FORMAT order,
                box [x1, y1, x2, y2] in its pixels), ...]}.
        Raises:
            ValueError: the model does not take supports, a class has no example, or an
                image / box is malformed.
        """
        from ..data.episodes import SupportCropper, stack_supports
        from ..modeling import is_support_conditioned

        if not is_support_conditioned(self.model):
            raise ValueError(f"{type(self.model).__name__} does not take support examples; "
                             f"use MODEL.META_ARCHITECTURE SiameseRCNN")
        # Unnamed trained classes keep their labels 1..K; new names come after them.
        names = self.class_names = list(self.class_names or [
            f"class{i}" for i in range(1, num_classes(self.cfg) + 1)])
        cropper = SupportCropper.from_config(self.cfg)
        crops, boxes, labels = [], [], []
        for name, examples in supports.items():
            if not examples:
                raise ValueError(f"supports: class {name!r} has no example")
            if name not in names:
                names.append(name)
            for image, box in examples:
                self._check_image(image)
                crop, crop_box = cropper.crop(image, box)
                crops.append(crop)
                boxes.append(crop_box)
                labels.append(names.index(name) + 1)
        s = stack_supports(crops, boxes, labels)
        self.model.set_supports(s["images"], s["boxes"], s["labels"])

    @staticmethod
    def _check_image(image) -> None:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Predictor expects an H x W x 3 numpy array, got "
                             f"{getattr(image, 'shape', type(image))}")
        if image.dtype != np.uint8:
            raise ValueError(f"Predictor expects uint8 pixels, got {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            # The resize divides by the short side: an empty image would give inf/NaN scales.
            raise ValueError(f"Predictor got an empty image of shape {image.shape}")

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict:
        """Detect objects in one H x W x 3 uint8 image (channels in ``INPUT.FORMAT``).

        Returns:
            {"boxes": float32 [N, 4] XYXY in this image's pixels, "scores": [N],
             "labels": int64 [N] in 1..K, "class_names": list of N names (or None)}
        """
        self._check_image(image)
        out = self.detect(image)
        names = self.class_names
        out["class_names"] = [names[int(i) - 1] for i in out["labels"]] if names else None
        return out
