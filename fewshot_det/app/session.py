"""The model the app serves and the classes taught to it, through the package's own pieces.

How a class is added without training depends on what the model declares
(``modeling.Detector``), never on its class name:

* support-conditioned (``is_support_conditioned``: SiameseRCNN): the examples are
  cropped and encoded into the class's prototype (``Predictor.set_supports``);
* a cosine box classifier (``model.cosine_classifier()``: TFA models): the class list
  grows by class surgery of MODEL.WEIGHTS (``engine.fewshot.load_with_surgery``: the
  trained rows are kept, the new ones start fresh) and the new rows are imprinted from
  the examples' box features (``engine.fewshot.imprint_kshot``);
* anything else (a linear box predictor, YOLO-grid) cannot take a class without
  training: ``teach_mode`` is None and the page says which configs can.

The taught examples (``data.support_file.SupportExample``) are the state; the model is
always what they give, so forgetting a class rebuilds the model from MODEL.WEIGHTS.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..config import num_classes
from ..data.support_file import SupportExample, check_box, load_support_images

logger = logging.getLogger(__name__)

# Shown when the model cannot take a class without training.
TEACHABLE_CONFIGS = (
    "configs/quickstart/fewshot_siamese_base_shapes.yaml",
    "configs/quickstart/fewshot_siamese_ft_shapes.yaml",
    "configs/fewshot/Base-Siamese-RCNN-FPN.yaml",
    "configs/quickstart/fewshot_tfa_ft_shapes.yaml",
    "configs/fewshot/Base-TFA-finetune.yaml",
)


def teach_mode(model) -> Optional[str]:
    """"supports", "imprint" or None: how ``model`` takes a class without training."""
    from ..modeling import is_support_conditioned

    if is_support_conditioned(model):
        return "supports"
    if model.cosine_classifier() is not None:
        return "imprint"
    return None


def teach_message(mode: Optional[str], model_name: str) -> str:
    """One sentence for the page on how classes are taught to this model."""
    if mode == "supports":
        return (f"{model_name} is support-conditioned: a class is added from its example "
                f"boxes (encoded as the class prototype), without training.")
    if mode == "imprint":
        return (f"{model_name} has a cosine box classifier: a class is added by growing the "
                f"class list and imprinting its row from the example boxes, without "
                f"training.")
    return (f"{model_name} cannot take a new class without training (its box classifier "
            f"is neither support-conditioned nor cosine). Use a siamese config "
            f"({', '.join(c for c in TEACHABLE_CONFIGS if 'siamese' in c.lower())}) or a "
            f"TFA / cosine one ({', '.join(c for c in TEACHABLE_CONFIGS if 'tfa' in c.lower())})"
            f"; detection and review work as they are.")


class ModelSession:
    """The served model (a ``Predictor``) and the taught classes; thread-safe.

    Args:
        cfg: the config the predictor was built from (MODEL.WEIGHTS: its weights).
        predictor: a built ``Predictor``; anything else callable on an image returning
            {"boxes", "scores", "labels", "class_names"} and with ``class_names`` serves
            detection and review only (tests use one whose detections they choose).
        predictor_factory: builds a ``Predictor`` from a config (rebuilds after a class is
            forgotten, and the grown model of imprinting); default ``Predictor``.
    """

    def __init__(self, cfg, predictor, predictor_factory: Optional[Callable] = None):
        from ..engine.predictor import Predictor

        self.cfg = cfg
        self.predictor = predictor
        self._factory = predictor_factory or Predictor
        self._real = isinstance(predictor, Predictor)
        self.model_name = (type(predictor.model).__name__ if self._real
                           else type(predictor).__name__)
        self.mode = teach_mode(predictor.model) if self._real else None
        # an unnamed class i is "class{i}", as Predictor.set_supports names it
        self.trained: List[str] = list(predictor.class_names or []) or (
            [f"class{i}" for i in range(1, num_classes(predictor.cfg) + 1)] if self._real else [])
        self.taught: Dict[str, List[SupportExample]] = {}
        self._detectors: Dict[bool, Callable] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, cfg) -> "ModelSession":
        from ..engine.predictor import Predictor

        return cls(cfg, Predictor(cfg))

    # ------------------------------------------------------------------ state
    @property
    def class_names(self) -> List[str]:
        """Label i is ``class_names[i - 1]``: the trained classes, then the taught ones."""
        return list(self.predictor.class_names or [])

    def detectable(self) -> List[str]:
        """The class names the model can output now (a siamese model: those with a
        prototype)."""
        names = self.class_names
        if not self._real:
            return names
        ids = self.predictor.model.detectable_class_ids()
        return [names[i - 1] if 0 < i <= len(names) else f"class{i}" for i in ids]

    def describe(self) -> dict:
        """What the page shows of the model (read without waiting for a running job)."""
        return {"model": self.model_name, "teach_mode": self.mode,
                "teach_message": teach_message(self.mode, self.model_name),
                "trained": self.trained, "detectable": self.detectable(),
                "taught": {n: len(ex) for n, ex in self.taught.items()},
                "slice_default": bool(self.cfg.TEST.SLICE.ENABLED)}

    def check_new_name(self, name: str) -> str:
        """``name`` stripped; ``ValueError`` when empty or already a class."""
        name = (name or "").strip()
        if not name:
            raise ValueError("give the class a name")
        if name in self.trained or (name in self.class_names and name not in self.taught):
            raise ValueError(f"the name {name!r} is taken: the model was trained on a class of "
                             f"that name; choose another")
        if name in self.taught:
            raise ValueError(f"the name {name!r} is taken by a class taught here; pick it in "
                             f"'add to class' to give it another example")
        return name

    # ------------------------------------------------------------------ teaching
    def teach(self, classes: Dict[str, Sequence[SupportExample]], *,
              replace_all: bool = False) -> None:
        """Set the examples of ``classes`` (new classes, or more examples of taught
        ones) and update the model; on any error the model and the classes stay as they
        were.

        Args:
            classes: {name: all its examples}; boxes inside their images.
            replace_all: forget every other taught class (loading a support file).
        Raises:
            ValueError: the model cannot take classes, or an example is unusable.
        """
        if self.mode is None:
            raise ValueError(teach_message(self.mode, self.model_name))
        with self._lock:
            before = dict(self.taught)
            after = {} if replace_all else dict(self.taught)
            after.update({n: list(ex) for n, ex in classes.items()})
            try:
                if self.mode == "supports" and not replace_all:
                    self._set_supports(classes)
                else:
                    self._rebuild(after)
                self.taught = after
            except Exception:
                self.taught = before
                if self.mode == "supports":  # a half-set class would stay in the names
                    self._rebuild(before)
                raise

    def forget(self, name: str) -> None:
        """Remove a taught class (the model is rebuilt from MODEL.WEIGHTS)."""
        with self._lock:
            if name not in self.taught:
                raise KeyError(f"no taught class {name!r}")
            remaining = {n: ex for n, ex in self.taught.items() if n != name}
            self._rebuild(remaining)
            self.taught = remaining

    def _set_supports(self, classes: Dict[str, Sequence[SupportExample]]) -> None:
        fmt = self.predictor.cfg.INPUT.FORMAT
        self.predictor.set_supports(load_support_images(classes, image_format=fmt))

    def _rebuild(self, taught: Dict[str, Sequence[SupportExample]]) -> None:
        """A fresh model from MODEL.WEIGHTS with ``taught`` applied (support prototypes or
        imprinted rows: ``Predictor.set_supports``)."""
        self.predictor = self._factory(self.cfg)
        if taught:
            self._set_supports(taught)
        self._detectors.clear()

    # ------------------------------------------------------------------ detecting
    def detect(self, image_bgr: np.ndarray, sliced: Optional[bool] = None) -> dict:
        """Detections of one BGR photo as plain lists.

        Args:
            sliced: sliced inference (TEST.SLICE.*) on or off; None: the config's.
        Returns:
            {"boxes": [[x1, y1, x2, y2]], "scores": [...], "labels": [1..K],
             "names": [...]} in the photo's pixels, by decreasing score.
        """
        with self._lock:  # a consistent model and class list (teaching swaps them)
            names = self.class_names
            run = self.predictor
            if self._real:
                run = self._detector(sliced)
                if self.predictor.cfg.INPUT.FORMAT == "RGB":
                    image_bgr = np.ascontiguousarray(image_bgr[:, :, ::-1])
        with _no_grad():
            out = run(image_bgr)
        scores = np.asarray(out["scores"], dtype=np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        labels = np.asarray(out["labels"]).reshape(-1)[order].astype(int).tolist()
        boxes = np.asarray(out["boxes"], dtype=np.float64).reshape(-1, 4)[order]
        return {"boxes": np.round(boxes, 2).tolist(),
                "scores": np.round(scores[order], 4).tolist(), "labels": labels,
                "names": [names[k - 1] if 0 < k <= len(names) else f"class{k}"
                          for k in labels]}

    def _detector(self, sliced: Optional[bool]) -> Callable:
        """The predictor's model behind the test resize or sliced (``engine.slicing``)."""
        from ..engine.slicing import image_detector

        sliced = bool(self.cfg.TEST.SLICE.ENABLED) if sliced is None else bool(sliced)
        if sliced not in self._detectors:
            cfg = self.predictor.cfg.clone()
            cfg.defrost()
            cfg.TEST.SLICE.ENABLED = sliced
            self._detectors[sliced] = image_detector(cfg, self.predictor.model)
        return self._detectors[sliced]


@contextlib.contextmanager
def _quiet(name: str):
    """Warnings of logger ``name`` are not shown inside the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _no_grad():
    import torch

    return torch.no_grad()


