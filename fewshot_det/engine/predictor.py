"""``Predictor``: the model for one image at a time, as an application uses it.

    cfg = fewshot_det.get_cfg(); cfg.merge_from_file("configs/...yaml")
    cfg.MODEL.WEIGHTS = "output/model_final.pth"
    predictor = fewshot_det.Predictor(cfg)
    out = predictor(cv2.imread("image.jpg"))     # H x W x 3 uint8, INPUT.FORMAT order
    out["boxes"], out["scores"], out["labels"], out["class_names"]

A support-conditioned model (SiameseRCNN) and a cosine-classifier (TFA) model also take
examples of classes at inference time, including classes they were never trained on (as
support prototypes, or as imprinted classifier rows: no training either way):

    predictor = fewshot_det.Predictor(cfg, supports={"bird_nest": [(img1, [x1, y1, x2, y2]),
                                                                   (img2, box2)]})
    predictor.set_supports({"insulator": [(img3, box3)]})   # add / replace classes later
    predictor = fewshot_det.Predictor(cfg, supports="supports.json")  # a support file

Inference refuses what training tolerates: the config gets the checks the tools run
(``validate_cfg``), and MODEL.WEIGHTS must fill the whole model (``load_weights(...,
strict=True)``): a class layer of another class count or a missing head would be random.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..config import num_classes, num_classes_key, set_num_classes, validate_cfg
from .defaults import resolve_device
from .slicing import image_detector

logger = logging.getLogger(__name__)

# {class name: [(H x W x 3 uint8 image, box [x1, y1, x2, y2] in its pixels), ...]}
SupportExamples = Dict[str, Sequence[Tuple[np.ndarray, Sequence[float]]]]
# The configs whose models take classes from examples, for the error of those that cannot.
TEACHABLE_CONFIGS = ("configs/quickstart/fewshot_siamese_base_shapes.yaml (support "
                     "prototypes), configs/quickstart/fewshot_tfa_ft_shapes.yaml (cosine "
                     "classifier, imprinted)")


def supports_from_file(path: str, image_format: str) -> SupportExamples:
    """The examples of a support file (``data.support_file``) as ``set_supports`` takes
    them, images read in ``image_format`` (INPUT.FORMAT)."""
    from ..data.support_file import load_support_images, read_support_file

    return load_support_images(read_support_file(path), image_format)


def _class_names_from(cfg, weights_path: str) -> Tuple[Optional[List[str]], str]:
    """(names, where they come from): the checkpoint's class names (``checkpoint.
    class_names``: saved in ours, COCO's for torchvision / detectron2 COCO models), else
    the config's datasets' (if readable), else (None, "")."""
    if weights_path:
        from ..checkpoint.class_names import checkpoint_class_names

        names = checkpoint_class_names(weights_path)
        if names:
            return names, weights_path
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        try:
            from ..data import get_dataset

            meta = get_dataset(name, check_images=False, box_policy="keep")[1]
            return list(meta.thing_classes), f"dataset {name}"
        except Exception:
            continue
    return None, ""


def _example_list(name, examples) -> list:
    """A class's support examples as a list; ValueError when there is none."""
    if isinstance(examples, np.ndarray) or not hasattr(examples, "__len__"):
        raise ValueError(f"supports: class {name!r}: expected a list of (image, box) pairs, "
                         f"got {type(examples).__name__}")
    if not len(examples):
        raise ValueError(f"supports: class {name!r} has no example")
    return list(examples)


class Predictor:
    """Loads ``MODEL.WEIGHTS`` into the configured model, in eval mode on MODEL.DEVICE.

    Raises:
        ValueError: the config fails ``validate_cfg`` (naming the key), MODEL.WEIGHTS does
            not fill the configured model (both class counts or the missing tensors), or
            the class names do not match the model's class count.
    """

    def __init__(self, cfg, class_names: Optional[List[str]] = None,
                 supports: Optional[Union[SupportExamples, str]] = None):
        from ..checkpoint import load_weights
        from ..checkpoint.io import check_weight_file
        from ..modeling import build_model

        self.cfg = validate_cfg(cfg.clone())
        weights = self.cfg.MODEL.WEIGHTS
        if weights:  # an exported model or a missing file: say so before reading names
            check_weight_file(weights)
        names_from = "class_names="
        if not class_names:
            class_names, names_from = _class_names_from(cfg, weights)
        self.class_names = class_names
        if num_classes(self.cfg) == -1:
            if not self.class_names:
                raise ValueError(f"{num_classes_key(self.cfg)} is -1 and no class names were "
                                 "found (checkpoint, DATASETS or class_names=...)")
            self.cfg.defrost()
            set_num_classes(self.cfg, len(self.class_names))
        self.device = resolve_device(self.cfg.MODEL.DEVICE)
        self.model = build_model(self.cfg).to(self.device).eval()
        if weights:
            load_weights(self.model, weights, strict=True)
        else:
            logger.warning("MODEL.WEIGHTS is empty: the model keeps its random initial weights")
        self._check_class_names(names_from)  # after the weights: theirs is the clearer error
        self.detect = image_detector(self.cfg, self.model)
        if supports:
            if isinstance(supports, str):
                supports = supports_from_file(supports, self.cfg.INPUT.FORMAT)
            self.set_supports(supports)

    def _check_class_names(self, source: str) -> None:
        """As many names as the model has classes (label i is named ``class_names[i - 1]``);
        ``source`` says where the names come from."""
        k = num_classes(self.cfg)
        if self.class_names and len(self.class_names) != k:
            raise ValueError(f"{len(self.class_names)} class names (from {source}) for a model "
                             f"of {k} classes ({num_classes_key(self.cfg)} {k}): "
                             f"{list(self.class_names)[:10]}")

    def set_supports(self, supports: SupportExamples) -> None:
        """Give example objects of classes, by name: a support-conditioned model encodes
        them as class prototypes, a cosine classifier imprints its class rows from them
        (``modeling.fewshot.imprint``); no training either way. A name that is not one of
        ``class_names`` adds a class.

        Args:
            supports: {class name: [(H x W x 3 uint8 image in INPUT.FORMAT order,
                box [x1, y1, x2, y2] in its pixels), ...]}.
        Raises:
            ValueError: the model takes no classes from examples (naming the configs that
                do), a class has no example, an example is not an (image, box) pair, an
                image is malformed, or a box is not 4 finite numbers of positive area
                inside its image (a box reaching past the image is clipped, with a
                warning), naming the class and the example.
        """
        from ..modeling import is_support_conditioned

        if not isinstance(supports, dict) or not supports:
            raise ValueError(f"supports must be a non-empty {{class name: [(image, box), ...]}} "
                             f"dict, got {type(supports).__name__}")
        if is_support_conditioned(self.model):
            self._set_prototypes(supports)
        elif self.model.cosine_classifier() is not None:
            self._imprint(supports)
        else:
            c = self.cfg.MODEL
            raise ValueError(f"{c.META_ARCHITECTURE} (MODEL.ROI_BOX_HEAD.PREDICTOR "
                             f"{c.ROI_BOX_HEAD.PREDICTOR}) takes no classes from examples "
                             f"without training; use a support-conditioned or "
                             f"cosine-classifier config, e.g. {TEACHABLE_CONFIGS}")

    def _names(self) -> List[str]:
        """The class names, or class1..classK for unnamed trained classes."""
        return list(self.class_names or [
            f"class{i}" for i in range(1, num_classes(self.cfg) + 1)])

    def _examples(self, supports: SupportExamples):
        """(name, 1-based example index, count, image, box) of every example, the pairs
        and images checked (boxes are checked where they are used)."""
        for name, examples in supports.items():
            examples = _example_list(name, examples)
            for i, example in enumerate(examples, start=1):
                where = f"supports: class {name!r}, example {i} of {len(examples)}"
                if not isinstance(example, (tuple, list)) or len(example) != 2:
                    raise ValueError(f"{where}: expected an (image, box) pair, got "
                                     f"{type(example).__name__}")
                image, box = example
                self._check_image(image, where)
                yield name, where, image, box

    def _set_prototypes(self, supports: SupportExamples) -> None:
        """Support-conditioned models: the examples' crops encoded as class prototypes."""
        from ..data.episodes import SupportCropper, stack_supports

        # Unnamed trained classes keep their labels 1..K; new names come after them. The
        # names change only once every example is checked and encoded.
        names = self._names()
        names += [n for n in supports if n not in names]
        cropper = SupportCropper.from_config(self.cfg)
        crops, boxes, labels = [], [], []
        for name, where, image, box in self._examples(supports):
            crop, crop_box = cropper.crop(image, box, where=where)
            crops.append(crop)
            boxes.append(crop_box)
            labels.append(names.index(name) + 1)
        s = stack_supports(crops, boxes, labels)
        self.model.set_supports(s["images"], s["boxes"], s["labels"])
        self.class_names = names

    def _imprint(self, supports: SupportExamples) -> None:
        """Cosine classifiers: each class's row set to its examples' mean box-head feature;
        new names first grow the classifier by class surgery on the current weights (the
        trained rows kept)."""
        from ..data.episodes import check_support_box
        from ..modeling.fewshot.imprint import example_box_features, imprint_rows, mean_direction

        names = self._names()
        new = [n for n in supports if n not in names]
        items = []
        for name, where, image, box in self._examples(supports):
            box = check_support_box(box, image.shape, where)
            items.append((image, box, names.index(name) + 1 if name in names
                          else len(names) + new.index(name) + 1))
        if new:
            self._grow(names + new, new)
            names = names + new
        examples: Dict[int, list] = {}
        around = []
        for image, box, label in items:
            per_class, proposals = example_box_features(self.model,
                                                        [self._item(image, box, label)])
            for k, feats in per_class.items():
                examples.setdefault(k, []).append(feats)
            around.append(proposals)
        centre = mean_direction(torch.cat(around)) \
            if self.cfg.FEWSHOT.FINETUNE.IMPRINT_CENTRE and around else None
        done = imprint_rows(self.model, examples, sorted(examples), centre)
        self._calibrate(items)
        self.class_names = names
        logger.info("imprinted the classifier rows of %s from %d example box(es)",
                    [names[k - 1] for k in done], len(items))

    def _calibrate(self, items) -> None:
        """With FEWSHOT.CALIBRATION: the taught classes' calibration prototypes from the
        same (image, box, label) examples."""
        from ..data.mapper import image_to_tensor

        calibration = getattr(self.model, "calibration", None)
        if calibration is not None:
            calibration.set_prototypes(
                (image_to_tensor(image).to(self.device),
                 torch.tensor([list(box)], dtype=torch.float32, device=self.device), [label])
                for image, box, label in items)

    def _grow(self, names: List[str], new: List[str]) -> None:
        """Rebuild the model with ``names`` (the current ones, then ``new``): the current
        weights moved by class surgery, the new rows initialised for imprinting."""
        from ..checkpoint import load_state
        from ..modeling import build_model
        from ..modeling.fewshot import class_surgery

        cfg = self.cfg.clone()
        cfg.defrost()
        set_num_classes(cfg, len(names))
        cfg.freeze()
        state, _ = class_surgery(self.model.state_dict(), type(self.model),
                                 names[:len(names) - len(new)], names, new,
                                 seed=cfg.FEWSHOT.SEED)
        model = build_model(cfg).to(self.device).eval()
        load_state(model, state, source=f"the predictor's weights grown to {len(names)} "
                                        f"classes", strict=True)
        self.cfg, self.model = cfg, model
        self.detect = image_detector(cfg, model)

    def _item(self, image: np.ndarray, box, label: int) -> dict:
        """A model input of one example: the image through the test resize, its box."""
        from ..data.mapper import image_to_tensor
        from ..data.transforms import apply_transforms, transforms_from_config

        boxes = np.asarray([box], dtype=np.float32)
        resized, boxes = apply_transforms(transforms_from_config(self.cfg, is_train=False),
                                          image, boxes, np.random.default_rng(0))
        return {"image": image_to_tensor(resized), "height": image.shape[0],
                "width": image.shape[1], "image_id": "support",
                "instances": {"gt_boxes": torch.from_numpy(boxes),
                              "gt_labels": torch.tensor([label])}}

    @staticmethod
    def _check_image(image, where: str = "Predictor") -> None:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{where}: expects an H x W x 3 numpy array, got "
                             f"{getattr(image, 'shape', type(image))}")
        if image.dtype != np.uint8:
            raise ValueError(f"{where}: expects uint8 pixels, got {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            # The resize divides by the short side: an empty image would give inf/NaN scales.
            raise ValueError(f"{where}: got an empty image of shape {image.shape}")

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
