"""Siamese R-CNN: the few-shot detector conditioned on support examples, behind ``model(batch)``.

Shape glossary: N query images, M support crops, S crop side, K class columns,
L RPN levels, E RPN prototype length, D box-head width, D_i detections of image i.

    supports [M, 3, S, S] --backbone (shared with the query)--> features
        -> RPN.support_features (RPN prototypes [M, L, E])
        -> SiameseROIHeads.support_features (head prototypes [M, D])
        -> mean over shots per class -> Prototypes (K columns)
    query -> backbone -> support-conditioned RPN(prototypes) -> proposals
          -> SiameseROIHeads(prototypes) -> (K+1)-way softmax + class-specific deltas

The RPN is ``SupportMatchingRPN`` (box features matched with the support, nothing
learned) or ``AttentionRPN`` (a learned anchor-window correlation) (MODEL.RPN.NAME).

Where the prototypes come from:

* training: every query dict carries its episode (``"supports"``, made by
  ``data.episodes.EpisodicMapper``: set ``FEWSHOT.EPISODE.ENABLED``); gradients flow through
  both branches (unless ``freeze_detector``). Every episode's prototypes update the
  running ``prototype_bank``
  (detached), which saves with the model. With ``bank_columns`` each image then also gets
  every other class of the bank as a column (detached prototypes, memory-bank negatives),
  so the heads learn to rank a RoI among all known classes, as at inference, instead of
  among the N of an episode; objects of classes without a column are background;
* inference: a query dict that carries ``"supports"`` is detected against them
  (recomputed); otherwise the cached bank is used: columns 1..K in class-id order, a class
  without a prototype is never detected. ``set_supports`` encodes a support set once and
  writes it into the bank (``save_prototypes`` / ``load_prototypes`` move it to a file), so
  a detection costs one query forward.

Base training in two stages (``MODEL.SIAMESE.FREEZE_DETECTOR``): a plain Faster R-CNN is
trained first (the same run as the TFA baseline's base model), then the siamese model
starts from its weights with the detector frozen (backbone, RPN conv / objectness / deltas,
box head: parameters fixed and kept in eval mode, so batch norm uses its running
statistics for queries and supports alike) and learns only the conditioning: the
predictor's prototype-to-weight map and class rows (and the ``AttentionRPN``'s
correlation; ``SupportMatchingRPN`` learns nothing).
Trained jointly from scratch, the episodic losses left the shared features far weaker than
the plain detector's (34 vs 67 bAP50 on the synthetic benchmark, BENCHMARKS.md).
Fine-tuning then unfreezes everything above ``FREEZE_AT``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..backbone import Backbone
from ..fewshot.prototypes import PrototypeBank, Prototypes, average_shots
from ..registry import META_ARCH_REGISTRY
from .preprocess import normalize_and_pad, prepare_targets, rescale_detections
from .rcnn import GeneralizedRCNN

SUPPORT_CHUNK = 64  # crops encoded per backbone call in set_supports


@META_ARCH_REGISTRY.register()
class SiameseRCNN(GeneralizedRCNN):
    """Two-stage detector whose proposals and classes are conditioned on supports.

    Args:
        backbone, pixel_mean, pixel_std: as ``GeneralizedRCNN``.
        proposal_generator: support-conditioned (``SupportMatchingRPN``, ``AttentionRPN``:
            ``prototype_dim``, ``support_features`` and
            ``forward(images, features, prototypes, targets)``).
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
    """

    def __init__(self, *, backbone: Backbone, proposal_generator: nn.Module,
                 roi_heads: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 prototype_momentum: float = 0.99, freeze_detector: bool = False,
                 norm_eval: bool = False, train_prototypes: str = "episode",
                 bank_columns: bool = True):
        super().__init__(backbone=backbone, proposal_generator=proposal_generator,
                         roi_heads=roi_heads, pixel_mean=pixel_mean, pixel_std=pixel_std)
        for part, key in ((proposal_generator,
                           "MODEL.RPN.NAME (SupportMatchingRPN or AttentionRPN)"),
                          (roi_heads, "MODEL.ROI_HEADS.NAME (e.g. SiameseROIHeads)")):
            if not hasattr(part, "support_features"):
                raise ValueError(f"SiameseRCNN needs a support-conditioned {key}; "
                                 f"{type(part).__name__} is not")
        if not 0 <= prototype_momentum < 1:
            raise ValueError(f"MODEL.SIAMESE.PROTOTYPE_MOMENTUM must be in [0, 1), "
                             f"got {prototype_momentum}")
        self.prototype_bank = PrototypeBank(
            num_classes=roi_heads.num_classes, num_levels=len(proposal_generator.in_features),
            channels=proposal_generator.prototype_dim,
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
                   bank_columns=cfg.MODEL.SIAMESE.BANK_COLUMNS)

    def frozen_modules(self) -> List[nn.Module]:
        """The plain detector's modules, fixed when ``freeze_detector``."""
        return [self.backbone, self.proposal_generator.head, self.roi_heads.box_head]

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
    def encode_supports(self, images: Tensor, boxes: Tensor):
        """Per-crop prototypes (no averaging), in the model's current mode.

        Args:
            images: float [M, 3, S, S], 0-255, INPUT.FORMAT channel order.
            boxes: float [M, 4] XYXY in the crops' pixels.
        Returns:
            (rpn float [M, L, E], head float [M, D])
        """
        if images.ndim != 4 or len(images) != len(boxes) or not len(images):
            raise ValueError(f"supports: expected images [M, 3, S, S] and boxes [M, 4] with "
                             f"M >= 1, got {tuple(images.shape)} and {tuple(boxes.shape)}")
        padded = normalize_and_pad(list(images), self.pixel_mean, self.pixel_std,
                                   self.backbone.size_divisibility)
        features = self.backbone(padded.tensors)
        box_list = [b[None] for b in boxes.to(self.device, torch.float32)]
        return (self.proposal_generator.support_features(features, box_list),
                self.roi_heads.support_features(features, box_list))

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
        rpn, head = self.encode_supports(torch.cat([s["images"] for s in supports]),
                                         torch.cat([s["boxes"] for s in supports]))
        counts = [len(s["labels"]) for s in supports]
        parts = {"rpn": [], "head": [], "ids": []}
        for s, r, h in zip(supports, rpn.split(counts), head.split(counts)):
            labels = s["labels"].to(self.device)
            ids = s["class_ids"].to(self.device)
            parts["rpn"].append(average_shots(r, labels, ids))
            parts["head"].append(average_shots(h, labels, ids))
            parts["ids"].append(ids)
        ids = torch.stack(parts["ids"])
        return Prototypes(rpn=torch.stack(parts["rpn"]), head=torch.stack(parts["head"]),
                          class_ids=ids, valid=torch.ones_like(ids, dtype=torch.bool))

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
        rpn = torch.cat([e[0] for e in encoded])
        head = torch.cat([e[1] for e in encoded])
        classes = torch.unique(labels)
        self.prototype_bank.assign(classes, average_shots(rpn, labels, classes),
                                   average_shots(head, labels, classes))
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
    def forward(self, batch: List[dict]) -> Union[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """
        Args:
            batch: per image the ``GeneralizedRCNN`` dict; in training also
                ``"supports"`` {"images" [M, 3, S, S], "boxes" [M, 4], "labels" [M],
                "class_ids" [K]} (optional at inference).
        Returns:
            training: {"loss_rpn_cls", "loss_rpn_prior", "loss_rpn_loc", "loss_cls",
                "loss_box_reg"};
            eval: per image {"boxes" [D_i, 4] original pixels, "scores", "labels" class ids}.
        """
        images = normalize_and_pad([item["image"] for item in batch], self.pixel_mean,
                                   self.pixel_std, self.backbone.size_divisibility)
        features = self.backbone(images.tensors)
        if not self.training:
            prototypes = self.inference_prototypes(batch)
            proposals, _ = self.proposal_generator(images, features, prototypes)
            detections, _ = self.roi_heads(images, features, proposals, prototypes)
            return rescale_detections(detections, batch, images.image_sizes)
        with torch.set_grad_enabled(self.train_prototypes == "episode"):
            prototypes = self.episode_prototypes(batch)  # "bank": only updates the bank
        targets = prepare_targets(batch, self.roi_heads.num_classes, self.device)
        self.prototype_bank.update(prototypes.class_ids.flatten(), prototypes.rpn.flatten(0, 1),
                                   prototypes.head.flatten(0, 1), self.prototype_momentum)
        if self.train_prototypes == "bank":
            prototypes = self.prototype_bank.prototypes(
                len(batch), self.prototype_bank.known_classes())
        elif self.bank_columns:
            prototypes = with_bank_columns(prototypes, self.prototype_bank)
        proposals, proposal_losses = self.proposal_generator(images, features, prototypes,
                                                             targets)
        _, detector_losses = self.roi_heads(images, features, proposals, prototypes, targets)
        return {**proposal_losses, **detector_losses}

    @torch.no_grad()
    def propose(self, batch: List[dict], class_ids: Optional[Sequence[int]] = None,
                rescore: bool = False) -> List[Tensor]:
        """Proposals of every image (eval mode), in resized-image pixels, conditioned on the
        bank's prototypes of ``class_ids`` (default: every known class) or on the batch's
        own supports.

        Args:
            rescore: re-rank the attention RPN's proposals by their support score in the
                box head (``SiameseROIHeads.support_scores``: best column's softmax
                probability), a second, RoI-level matching step. It costs one box-head pass
                over the proposals, the detector's own second stage, so it changes the
                ranking ``propose`` reports, never the detections of ``forward``.
        Returns:
            per image float [P, 4] XYXY, by decreasing merged objectness (or support score).
        """
        images = normalize_and_pad([item["image"] for item in batch], self.pixel_mean,
                                   self.pixel_std, self.backbone.size_divisibility)
        features = self.backbone(images.tensors)
        prototypes = self.inference_prototypes(batch, class_ids)
        proposals = self.proposal_generator(images, features, prototypes)[0]
        if not rescore:
            return proposals
        scores = self.roi_heads.support_scores(features, proposals, prototypes)
        # stable: equal scores keep the objectness order
        return [p[s.argsort(descending=True, stable=True)] for p, s in zip(proposals, scores)]


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
    rpn, head, ids = [], [], []
    for i in range(len(prototypes.class_ids)):
        own = prototypes.class_ids[i]
        extra = known[~torch.isin(known, own)]
        rows = extra - 1
        rpn.append(torch.cat([prototypes.rpn[i], bank.rpn[rows].to(prototypes.rpn.dtype)]))
        head.append(torch.cat([prototypes.head[i], bank.head[rows].to(prototypes.head.dtype)]))
        ids.append(torch.cat([own, extra]))
    ids = torch.stack(ids)
    return Prototypes(rpn=torch.stack(rpn), head=torch.stack(head), class_ids=ids,
                      valid=torch.ones_like(ids, dtype=torch.bool))
