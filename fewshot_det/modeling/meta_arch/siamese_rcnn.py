"""Siamese R-CNN: the few-shot detector conditioned on support examples, behind ``model(batch)``.

Shape glossary: N query images, M support crops, S crop side, K class columns,
D box-head width, C proposal candidates per image, P proposals the box head gets per image,
D_i detections of image i.

    supports [M, 3, S, S] --backbone (shared with the query)--> features
        -> SiameseROIHeads.support_features (head prototypes [M, D])
        -> mean over shots per class -> Prototypes (K columns)
    query -> backbone -> RPN -> C candidates (objectness order)
          -> support-conditioned proposal stage: each candidate's box-head feature scored
             against the prototypes, the P best by support score kept
          -> SiameseROIHeads(prototypes) -> (K+1)-way softmax + class-specific deltas

Why the proposals are conditioned at the RoI level: the RPN's anchor-level features of a
small backbone carry little class identity, while the box head's RoI features do (the
same features the head classifies with). Ranking a larger candidate set by support score
keeps the support's objects among the P proposals in cluttered images, where the
objectness order alone drops them (BENCHMARKS.md, few-shot section).

Where the prototypes come from:

* training: every query dict carries its episode (``"supports"``, made by
  ``data.episodes.EpisodicMapper``: set ``FEWSHOT.EPISODE.ENABLED``); gradients flow through
  both branches (unless ``freeze_detector``). Every episode's prototypes update the
  running ``prototype_bank`` (detached), which saves with the model. With ``bank_columns``
  each image then also gets every other class of the bank as a column (detached
  prototypes, memory-bank negatives), so the head learns to rank a RoI among all known
  classes, as at inference, instead of among the N of an episode; objects of classes
  without a column are background;
* inference: a query dict that carries ``"supports"`` is detected against them
  (recomputed); otherwise the cached bank is used: columns 1..K in class-id order, a class
  without a prototype is never detected. ``set_supports`` encodes a support set once and
  writes it into the bank (``save_prototypes`` / ``load_prototypes`` move it to a file), so
  a detection costs one query forward.

Base training in two stages (``MODEL.SIAMESE.FREEZE_DETECTOR``): a plain Faster R-CNN is
trained first (the same run as the TFA baseline's base model), then the siamese model
starts from its weights with the detector frozen (backbone, RPN, box head: parameters fixed
and kept in eval mode, so batch norm uses its running statistics for queries and supports
alike) and learns only the conditioning: the predictor's prototype-to-weight map and class
rows. Trained jointly from scratch, the episodic losses leave the shared features far
weaker than the plain detector's (BENCHMARKS.md). Fine-tuning then unfreezes everything
above ``FREEZE_AT``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..backbone import Backbone
from ..fewshot.prototypes import PrototypeBank, Prototypes, average_shots
from ..fewshot.surgery import PREDICTOR, ClassRows
from ..registry import META_ARCH_REGISTRY
from ..preprocess import normalize_and_pad, prepare_targets, rescale_detections
from ..traceable import descending_order
from .capabilities import Detections
from .rcnn import GeneralizedRCNN
from .capabilities import SupportConditioned

SUPPORT_CHUNK = 64  # crops encoded per backbone call in set_supports


@META_ARCH_REGISTRY.register()
class SiameseRCNN(GeneralizedRCNN, SupportConditioned):
    """Two-stage detector whose proposals and classes are conditioned on supports.

    Args:
        backbone, pixel_mean, pixel_std: as ``GeneralizedRCNN``.
        proposal_generator: a class-agnostic RPN (``post_nms_topk`` (train, test),
            ``forward(images, features, targets)``).
        roi_heads: support-conditioned (``SiameseROIHeads``).
        prototype_momentum: of the running prototype bank (MODEL.SIAMESE.PROTOTYPE_MOMENTUM).
        freeze_detector: train only the conditioning modules (module doc;
            MODEL.SIAMESE.FREEZE_DETECTOR).
        norm_eval: keep every batch-norm layer in eval mode in training (running statistics,
            not updated: fine-tuning batches of a few images and support crops would
            otherwise overwrite them; MODEL.SIAMESE.NORM_EVAL).
        train_prototypes: "episode" (each image's own episode prototypes score its
            episode columns) or "bank" (every column scored with the running bank, as at
            inference; the episodes only update the bank: fine-tuning, where a 1-shot
            episode prototype is noise around the K-shot mean; MODEL.SIAMESE.TRAIN_PROTOTYPES).
        bank_columns: add the bank's other classes as columns in training
            (MODEL.SIAMESE.BANK_COLUMNS).
        proposal_candidates: at inference, C candidates per image ranked by support score,
            of which the RPN's test top-k go to the box head (0 = the RPN's own top-k;
            MODEL.SIAMESE.PROPOSAL_CANDIDATES).
    """

    def __init__(self, *, backbone: Backbone, proposal_generator: nn.Module,
                 roi_heads: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 prototype_momentum: float = 0.99, freeze_detector: bool = False,
                 norm_eval: bool = False, train_prototypes: str = "episode",
                 bank_columns: bool = True, proposal_candidates: int = 1000):
        super().__init__(backbone=backbone, proposal_generator=proposal_generator,
                         roi_heads=roi_heads, pixel_mean=pixel_mean, pixel_std=pixel_std)
        if not hasattr(roi_heads, "support_scores"):
            raise ValueError(f"SiameseRCNN needs support-conditioned ROI heads "
                             f"(MODEL.ROI_HEADS.NAME SiameseROIHeads); "
                             f"{type(roi_heads).__name__} is not")
        if proposal_candidates < 0:
            raise ValueError(f"MODEL.SIAMESE.PROPOSAL_CANDIDATES must be >= 0, got "
                             f"{proposal_candidates}")
        self.proposal_candidates = proposal_candidates
        if not 0 <= prototype_momentum < 1:
            raise ValueError(f"MODEL.SIAMESE.PROTOTYPE_MOMENTUM must be in [0, 1), "
                             f"got {prototype_momentum}")
        self.prototype_bank = PrototypeBank(num_classes=roi_heads.num_classes,
                                            head_dim=roi_heads.box_head.output_size)
        self.prototype_momentum = prototype_momentum
        self.freeze_detector = freeze_detector
        self.norm_eval = norm_eval
        if train_prototypes not in ("episode", "bank"):
            raise ValueError(f"MODEL.SIAMESE.TRAIN_PROTOTYPES must be 'episode' or 'bank', got "
                             f"{train_prototypes!r}")
        self.train_prototypes = train_prototypes
        self.bank_columns = bank_columns
        if freeze_detector:
            for module in self.frozen_modules():
                module.requires_grad_(False)
        self.train(self.training)  # applies freeze_detector / norm_eval to the modes

    @classmethod
    def from_config(cls, cfg) -> "SiameseRCNN":
        return cls(**cls.components_from_config(cfg),
                   prototype_momentum=cfg.MODEL.SIAMESE.PROTOTYPE_MOMENTUM,
                   freeze_detector=cfg.MODEL.SIAMESE.FREEZE_DETECTOR,
                   norm_eval=cfg.MODEL.SIAMESE.NORM_EVAL,
                   train_prototypes=cfg.MODEL.SIAMESE.TRAIN_PROTOTYPES,
                   bank_columns=cfg.MODEL.SIAMESE.BANK_COLUMNS,
                   proposal_candidates=cfg.MODEL.SIAMESE.PROPOSAL_CANDIDATES)

    @classmethod
    def class_rows(cls, state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
        """Class-shaped tensors for class surgery: the predictor's class rows (background
        kept; a new class's residual row starts at zero, so its weight is exactly the one
        its support prototype gives), its box deltas (a new class starts from the mean of
        the copied classes' deltas, the regression a class given only as supports gets),
        and the prototype bank (an empty row = no prototype until supports or fine-tuning
        episodes give one)."""
        return [ClassRows(PREDICTOR + "cls_score.weight", leading_rows=1, init="zeros"),
                ClassRows(PREDICTOR + "bbox_pred.weight", rows_per_class=4,
                          init="source_mean"),
                ClassRows(PREDICTOR + "bbox_pred.bias", rows_per_class=4, init="source_mean"),
                ClassRows("prototype_bank.head", init="zeros"),
                ClassRows("prototype_bank.count", init="zeros")]

    # The support-conditioned predictor needs prototypes besides box features, and its
    # class rows are residuals of prototype weights: none of the plain R-CNN's shortcuts.
    def cosine_classifier(self) -> Optional[nn.Module]:
        return None

    def caches_roi_features(self) -> bool:
        return False

    def trains_heads_on_crops(self) -> bool:
        return False

    def detectable_class_ids(self) -> List[int]:
        """The classes with a prototype in the bank (trained, or set from supports)."""
        return self.prototype_bank.known_classes().tolist()

    def frozen_modules(self) -> List[nn.Module]:
        """The plain detector's modules, fixed when ``freeze_detector``."""
        return [self.backbone, self.proposal_generator, self.roi_heads.box_head]

    def train(self, mode: bool = True) -> "SiameseRCNN":
        super().train(mode)
        if not mode:
            return self
        if self.freeze_detector:
            for module in self.frozen_modules():
                module.eval()  # batch norm: running statistics, never updated
        if self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ------------------------------------------------------------------ supports
    def encode_supports(self, images: Tensor, boxes: Tensor) -> Tensor:
        """Per-crop prototypes (no averaging), in the model's current mode.

        Args:
            images: float [M, 3, S, S], 0-255, INPUT.FORMAT channel order.
            boxes: float [M, 4] XYXY in the crops' pixels.
        Returns:
            float [M, D]
        """
        if images.ndim != 4 or len(images) != len(boxes) or not len(images):
            raise ValueError(f"supports: expected images [M, 3, S, S] and boxes [M, 4] with "
                             f"M >= 1, got {tuple(images.shape)} and {tuple(boxes.shape)}")
        padded = normalize_and_pad(list(images), self.pixel_mean, self.pixel_std,
                                   self.backbone.size_divisibility)
        features = self.backbone(padded.tensors)
        box_list = [b[None] for b in boxes.to(self.device, torch.float32)]
        return self.roi_heads.support_features(features, box_list)

    def episode_prototypes(self, batch: List[dict]) -> Prototypes:
        """Prototypes of every query's own ``"supports"`` (all crops in one backbone pass)."""
        supports = [item.get("supports") for item in batch]
        if any(s is None for s in supports):
            raise ValueError("SiameseRCNN needs support examples with every training image: "
                             "set FEWSHOT.EPISODE.ENABLED True (episodic data)")
        cols = {len(s["class_ids"]) for s in supports}
        if len(cols) != 1:
            raise ValueError(f"every image of a batch needs the same number of support classes, "
                             f"got {sorted(cols)}")
        head = self.encode_supports(torch.cat([s["images"] for s in supports]),
                                    torch.cat([s["boxes"] for s in supports]))
        heads, all_ids = [], []
        for s, h in zip(supports, head.split([len(s["labels"]) for s in supports])):
            ids = s["class_ids"].to(self.device)
            heads.append(average_shots(h, s["labels"].to(self.device), ids))
            all_ids.append(ids)
        ids = torch.stack(all_ids)
        return Prototypes(head=torch.stack(heads), class_ids=ids,
                          valid=torch.ones_like(ids, dtype=torch.bool))

    @torch.no_grad()
    def set_supports(self, images: Tensor, boxes: Tensor, labels: Tensor) -> List[int]:
        """Encode a support set (eval mode) and cache its class prototypes in the bank.

        Classes not in ``labels`` keep their current prototypes; class ids above K add
        classes (detected with prototype-only weights).

        Args:
            images: float [M, 3, S, S]; boxes: float [M, 4] (crop frame); labels: int64 [M]
                class ids >= 1.
        Returns:
            the class ids that were set.
        """
        labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if len(labels) != len(images) or (labels < 1).any():
            raise ValueError(f"set_supports: need one class id >= 1 per crop, got "
                             f"{labels.tolist()} for {len(images)} crops")
        was_training = self.training
        self.eval()
        try:
            encoded = [self.encode_supports(images[i:i + SUPPORT_CHUNK].to(self.device),
                                            boxes[i:i + SUPPORT_CHUNK])
                       for i in range(0, len(images), SUPPORT_CHUNK)]
        finally:
            self.train(was_training)
        head = torch.cat(encoded)
        classes = torch.unique(labels)
        self.prototype_bank.assign(classes, average_shots(head, labels, classes))
        return classes.tolist()

    def save_prototypes(self, path: str) -> None:
        """Write the prototype bank (tensors only) to ``path``."""
        torch.save({k: v.cpu() for k, v in self.prototype_bank.state_dict().items()}, path)

    def load_prototypes(self, path: str) -> None:
        """Read a bank written by ``save_prototypes`` (any class count)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.prototype_bank.grow(len(state["count"]))
        self.prototype_bank.load_state_dict(state)

    def inference_prototypes(self, batch: List[dict],
                             class_ids: Optional[Sequence[int]] = None) -> Prototypes:
        """The queries' own supports when every item has them, else the bank (all its
        classes, or ``class_ids`` only)."""
        if all("supports" in item for item in batch):
            return self.episode_prototypes(batch)
        if not len(self.prototype_bank.known_classes()):
            raise ValueError("SiameseRCNN has no class prototypes: load trained weights, call "
                             "set_supports(...) (Predictor(..., supports=...)), or pass "
                             "'supports' with every image")
        return self.prototype_bank.prototypes(len(batch), class_ids)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: List[dict]) -> Union[Dict[str, Tensor], Detections]:
        """
        Args:
            batch: per image the ``GeneralizedRCNN`` dict; in training also
                ``"supports"`` {"images" [M, 3, S, S], "boxes" [M, 4], "labels" [M],
                "class_ids" [K]} (optional at inference).
        Returns:
            training: {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"};
            eval: per image {"boxes" [D_i, 4] original pixels, "scores", "labels" class ids}.
        """
        images = self.preprocess(batch)
        if not self.training:
            return rescale_detections(self.inference(images, batch), batch, images.image_sizes)
        features = self.features(images)
        with torch.set_grad_enabled(self.train_prototypes == "episode"):
            prototypes = self.episode_prototypes(batch)  # "bank": only updates the bank
        targets = prepare_targets(batch, self.roi_heads.num_classes, self.device)
        self.prototype_bank.update(prototypes.class_ids.flatten(),
                                   prototypes.head.flatten(0, 1), self.prototype_momentum)
        if self.train_prototypes == "bank":
            prototypes = self.prototype_bank.prototypes(
                len(batch), self.prototype_bank.known_classes())
        elif self.bank_columns:
            prototypes = with_bank_columns(prototypes, self.prototype_bank)
        # The RPN is class-agnostic in training: support ranking is an inference step on
        # the box head's own scores, which the head loss already trains.
        proposals, proposal_losses = self.proposals(images, features, targets)
        _, detector_losses = self.roi_heads(images, features, proposals, prototypes, targets)
        return {**proposal_losses, **detector_losses}

    def inference(self, images: ImageList, batch: Optional[List[dict]] = None) -> Detections:
        """Detections of a preprocessed batch in the resized frame (eval mode), against the
        batch's own supports when every item has them, else the bank's prototypes."""
        features = self.features(images)
        prototypes = self.inference_prototypes(batch or [{}] * len(images.image_sizes))
        proposals = self.conditioned_proposals(images, features, prototypes)
        detections, _ = self.roi_heads(images, features, proposals, prototypes)
        return detections

    def conditioned_proposals(self, images, features: Dict[str, Tensor],
                              prototypes: Prototypes, keep: Optional[int] = None
                              ) -> List[Tensor]:
        """The support-conditioned proposal stage (inference).

        Args:
            images, features: the padded queries and their backbone outputs.
            prototypes: the class columns the proposals are ranked for.
            keep: proposals kept per image (default: the RPN's test top-k, P).
        Returns:
            per image float [<= keep, 4] XYXY in resized-image pixels, best support score
            first; without ``proposal_candidates``, the RPN's top ``keep`` by objectness.
        """
        rpn = self.proposal_generator
        keep = rpn.post_nms_topk[1] if keep is None else keep
        candidates = self.rpn_candidates(images, features, max(keep, self.proposal_candidates))
        if not self.proposal_candidates:
            return [c[:keep] for c in candidates]
        scores = self.roi_heads.support_scores(features, candidates, prototypes)
        # stable: equal scores keep the objectness order
        return [c[descending_order(s)[:keep]] for c, s in zip(candidates, scores)]

    def rpn_candidates(self, images, features: Dict[str, Tensor], count: int) -> List[Tensor]:
        """The RPN's ``count`` best proposals per image by objectness (at test time, with at
        least as many anchors per level before NMS)."""
        rpn = self.proposal_generator
        pre, post = rpn.pre_nms_topk, rpn.post_nms_topk
        rpn.pre_nms_topk, rpn.post_nms_topk = (pre[0], max(pre[1], count)), (post[0], count)
        try:
            return rpn(images, features)[0]
        finally:
            rpn.pre_nms_topk, rpn.post_nms_topk = pre, post

    @torch.no_grad()
    def propose(self, batch: List[dict], class_ids: Optional[Sequence[int]] = None, *,
                keep: Optional[int] = None, ranked: bool = True) -> List[Tensor]:
        """Proposals of every image (eval mode) in ORIGINAL image pixels, conditioned on the
        bank's prototypes of ``class_ids`` (default: every known class) or on the batch's
        own supports: what the box head would get.

        Args:
            keep: proposals per image (default: the RPN's test top-k).
            ranked: False: the RPN's ``keep`` best by objectness, the same candidates
                without the support ranking (the reference the ranking is measured against).
        Returns:
            per image float [<= keep, 4] XYXY, best first.
        """
        was_training = self.training
        self.eval()
        try:
            images = self.preprocess(batch)
            features = self.features(images)
            prototypes = self.inference_prototypes(batch, class_ids)
            if ranked:
                boxes = self.conditioned_proposals(images, features, prototypes, keep)
            else:
                count = self.proposal_generator.post_nms_topk[1] if keep is None else keep
                boxes = self.rpn_candidates(images, features, count)
        finally:
            self.train(was_training)
        return [to_original_pixels(b, item) for b, item in zip(boxes, batch)]


def to_original_pixels(boxes: Tensor, item: dict) -> Tensor:
    """float [P, 4] boxes of the resized model input -> the item's original pixels."""
    h, w = item["image"].shape[-2:]
    return boxes * boxes.new_tensor([item["width"] / w, item["height"] / h] * 2)


def with_bank_columns(prototypes: Prototypes, bank: PrototypeBank) -> Prototypes:
    """Each image's columns followed by every other class the bank has a prototype of.

    The episode classes were just folded into the bank, so every image ends with the same
    number of columns (all the bank's known classes). Bank prototypes are buffers: no
    gradient flows into them.

    Args:
        prototypes: N images x K episode columns.
    Returns:
        Prototypes with K_b >= K columns per image.
    """
    known = bank.known_classes()
    head, ids = [], []
    for i in range(len(prototypes.class_ids)):
        own = prototypes.class_ids[i]
        extra = known[~torch.isin(known, own)]
        head.append(torch.cat([prototypes.head[i],
                               bank.head[extra - 1].to(prototypes.head.dtype)]))
        ids.append(torch.cat([own, extra]))
    ids = torch.stack(ids)
    return Prototypes(head=torch.stack(head), class_ids=ids,
                      valid=torch.ones_like(ids, dtype=torch.bool))
