"""YOLO-grid: a ResNet, a G x G grid head and the YOLOv1 loss, behind ``model(batch)``.

Shape glossary: N images, M GT boxes of one image, G grid size, B boxes per cell,
K classes, D detections of one image.

The stages (docs/ARCHITECTURE.md):

    batch --preprocess--> images [N, 3, S, S] normalised (INPUT.FIXED_SIZE square)
          --predict--> GridPredictions (backbone.body's feature -> head -> split
                       [N, G, G, B*5 + K] sigmoid outputs)
    train: encode_targets + yolo_loss -> {"loss_class", "loss_no_object",
           "loss_contain_conf", "loss_regression"}
    eval:  --postprocess--> detections in the S x S frame (decode_detections)
           --rescale_detections--> each original image's pixels
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Union

import torch
from torch import Tensor, nn

from ..fewshot.surgery import ClassRows
from ..registry import BACKBONE_REGISTRY, META_ARCH_REGISTRY, lookup
from ..yolo import (GridBackbone, YOLOHead, decode_detections, encode_targets,
                    split_predictions, yolo_loss)
from ..yolo.head import class_prior_logit
from ..preprocess import prepare_targets, rescale_detections
from ..yolo.loss import GridPredictions
from .capabilities import Detections, Detector


@META_ARCH_REGISTRY.register()
class YOLOGrid(Detector):
    """One-stage grid detector (YOLOv1 on a ResNet).

    Args:
        backbone: GridBackbone giving one feature map.
        head: YOLOHead.
        input_size: side of the square input the data pipeline resizes to (pixels).
        pixel_mean, pixel_std: per channel, 0-255 scale, in the input's channel order.
        l_coord, l_noobj, l_class, conf_target: loss settings (see ``yolo.loss``).
        score_thresh, nms_thresh, max_detections: decoding (see ``yolo.decode``).
    """

    def __init__(self, *, backbone: GridBackbone, head: YOLOHead, input_size: int,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], l_coord: float = 5.0,
                 l_noobj: float = 0.5, l_class: float = 1.0, conf_target: str = "iou",
                 score_thresh: float = 0.01, nms_thresh: float = 0.5, max_detections: int = 100):
        super().__init__()
        self.backbone, self.head, self.input_size = backbone, head, input_size
        self.loss_args = {"l_coord": l_coord, "l_noobj": l_noobj, "l_class": l_class,
                          "conf_target": conf_target}
        self.decode_args = {"score_thresh": score_thresh, "nms_thresh": nms_thresh,
                            "max_detections": max_detections}
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg) -> "YOLOGrid":
        i, y = cfg.INPUT, cfg.MODEL.YOLO
        if i.RESIZE_MODE != "fixed_square":
            raise ValueError(f"YOLOGrid needs INPUT.RESIZE_MODE 'fixed_square' (a fixed "
                             f"INPUT.FIXED_SIZE square input), got {i.RESIZE_MODE!r}")
        if y.CONF_TARGET not in ("iou", "one"):
            raise ValueError(f"MODEL.YOLO.CONF_TARGET must be 'iou' or 'one', "
                             f"got {y.CONF_TARGET!r}")
        name = cfg.MODEL.BACKBONE.NAME
        body = lookup(BACKBONE_REGISTRY, name, "MODEL.BACKBONE.NAME")(cfg)
        backbone = GridBackbone(body=body, in_feature=y.IN_FEATURE,
                                body_name=f"MODEL.BACKBONE.NAME {name!r}")
        head = YOLOHead(in_channels=backbone.output_shape()[y.IN_FEATURE].channels,
                        grid_size=y.GRID_SIZE, num_boxes=y.NUM_BOXES,
                        num_classes=y.NUM_CLASSES, conv_dim=y.HEAD_CONV_DIM,
                        num_convs=y.HEAD_NUM_CONVS, norm=y.HEAD_NORM)
        return cls(backbone=backbone, head=head, input_size=i.FIXED_SIZE,
                   pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD,
                   l_coord=y.L_COORD, l_noobj=y.L_NOOBJ, l_class=y.L_CLASS,
                   conf_target=y.CONF_TARGET, score_thresh=y.SCORE_THRESH_TEST,
                   nms_thresh=y.NMS_THRESH_TEST,
                   max_detections=cfg.TEST.DETECTIONS_PER_IMAGE)

    @classmethod
    def class_rows(cls, state_dict: Dict[str, Tensor], num_classes: int) -> List[ClassRows]:
        """Class-shaped tensors for class surgery (``modeling.fewshot.class_surgery``): the
        class-probability conv, one row per class; new rows as a fresh head's (weight ~
        N(0, 0.01^2), bias = the prior logit of 1 / (K + 1), see ``yolo.head``). The box
        predictor and the confidence do not depend on the classes.

        Args:
            state_dict: the checkpoint's weights (unused: the layout is fixed).
            num_classes: K of the target class list.
        """
        return [ClassRows("head.cls_pred.weight", std=0.01),
                ClassRows("head.cls_pred.bias", init="constant",
                          value=class_prior_logit(num_classes))]

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def body(self) -> nn.Module:
        return self.backbone.body

    def detectable_class_ids(self) -> List[int]:
        return list(range(1, self.num_classes + 1))

    def fixed_input_size(self) -> int:
        return self.input_size

    def forward(self, batch: List[dict]) -> Union[Dict[str, Tensor], Detections]:
        """
        Args:
            batch: per image {"image": [3, S, S] 0-255 in INPUT.FORMAT order, S =
                INPUT.FIXED_SIZE, "height", "width" (original size), "image_id",
                "instances": {"gt_boxes": [M, 4] XYXY in the S x S frame, "gt_labels": [M]
                in 1..K} (training only)}.
        Returns:
            training: {"loss_class", "loss_no_object", "loss_contain_conf",
                "loss_regression"} scalars;
            eval: per image {"boxes": float [D, 4] XYXY original pixels, "scores": [D],
                "labels": int64 [D] in 1..K}.
        """
        images = self.preprocess(batch)
        if not self.training:
            sizes = [(self.input_size,) * 2] * len(batch)
            return rescale_detections(self.inference(images), batch, sizes)
        preds = self.predict(images)
        targets = prepare_targets(batch, self.num_classes, self.device)
        grid_targets = encode_targets(
            [t["gt_boxes"] for t in targets], [t["gt_labels"] for t in targets],
            image_size=self.input_size, grid_size=self.head.grid_size,
            num_classes=self.num_classes)
        return yolo_loss(preds, grid_targets, **self.loss_args)

    def predict(self, images: Tensor) -> GridPredictions:
        """Grid predictions (sigmoid outputs) of normalised images float [N, 3, S, S]."""
        return split_predictions(self.head(self.backbone(images)), self.head.num_boxes)

    def postprocess(self, preds: GridPredictions) -> Detections:
        """Detections in the S x S input frame (``yolo.decode_detections``)."""
        return decode_detections(preds, image_size=self.input_size, **self.decode_args)

    def inference(self, images: Tensor) -> Detections:
        """Detections of normalised images float [N, 3, S, S], in their S x S frame."""
        return self.postprocess(self.predict(images))

    def preprocess(self, batch: List[dict]) -> Tensor:
        """Normalised images, float [N, 3, S, S]; ValueError for an image of another size."""
        size = self.input_size
        for item in batch:
            if tuple(item["image"].shape[-2:]) != (size, size):
                raise ValueError(
                    f"image {item.get('image_id', '?')}: YOLOGrid expects {size} x {size} "
                    f"inputs (INPUT.FIXED_SIZE, INPUT.RESIZE_MODE fixed_square), got "
                    f"{tuple(item['image'].shape[-2:])}")
        images = torch.stack([item["image"].to(self.device, non_blocking=True).float()
                              for item in batch])
        return (images - self.pixel_mean) / self.pixel_std
