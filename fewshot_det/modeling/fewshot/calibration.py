"""Prototype calibration: rescore a class's detections by how much their crops look like
its examples to an ImageNet classifier.

Shape glossary: K classes (row 0: background), F the classifier's feature size (1280 for
EfficientNet-Lite), D_i detections of image i, M example boxes of one class.

After a few-shot fine-tune the new classes' scores rank poorly: measured on aquarium
photos (10 shots, Lite0 TFA), most objects of the two new classes are detected, but below
false positives, which sit on base objects (fish called stingrays) and background. The
box head's features were trained on the base classes only and do not tell a stingray
from a fish; an ImageNet classifier's features do (stingray and starfish are ImageNet
classes, and ImageNet's thousand classes cover far more than any base set).

Following DeFRCN's prototypical calibration block (Qiao et al. 2021), each detection of a
calibrated class c is cropped from the image, encoded by the ImageNet classifier's body
and head (global average pool, L2-normalised), and its score becomes

    alpha * score + (1 - alpha) * cos(feature, prototype_c)

where prototype_c is the normalised mean feature of c's example boxes. Features are
ReLU6 outputs, so the cosine lies in [0, 1]. Classes whose prototype row is zero (base
classes, and any class given no examples) keep their scores.

The prototypes are a buffer of class rows, saved in checkpoints and moved by class
surgery like the classifier's rows. The feature network is not part of the detector's
state: it is the installed ImageNet classifier that FEWSHOT.CALIBRATION.WEIGHTS names,
read-only, so a checkpoint carries K+1 prototype rows and not a second network.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The ImageNet classifiers a calibration can use (FEWSHOT.CALIBRATION.WEIGHTS).
NETWORKS = ("imagenet:efficientnet-lite0", "imagenet:efficientnet-lite1",
            "imagenet:efficientnet-lite2")
FEATURE_SIZE = 1280  # EfficientNet-Lite's head width, the same for every variant
CROP_BATCH = 64  # crops encoded per forward pass (bounds the memory of a crowded image)


def load_feature_network(weights: str) -> nn.Module:
    """The ImageNet classifier named by ``weights`` (one of NETWORKS), frozen, eval mode."""
    from ...checkpoint.efficientnet_lite import load_imagenet_classifier

    if weights not in NETWORKS:
        raise ValueError(f"FEWSHOT.CALIBRATION.WEIGHTS must be one of {list(NETWORKS)} "
                         f"(or '' for none), got {weights!r}")
    with torch.random.fork_rng():  # its random init (then overwritten) must not shift
        net = load_imagenet_classifier(weights.rsplit("-", 1)[1])  # the run's seeded stream
    # NHWC maps: a crop's pass takes 17 ms instead of 32 on 2 AVX2 cores (same features
    # within 1e-6), and every new-class detection costs one
    net.body.channels_last = True
    return net.requires_grad_(False).eval()


class PrototypeCalibration(nn.Module):
    """Rescores detections of the classes that have a prototype (module doc).

    Args:
        network: an EfficientNet-Lite ImageNet classifier (``body``, ``head``,
            ``input_size``), used frozen and kept out of this module's state.
        num_classes: K.
        alpha: weight of the detector's score; 1 - alpha goes to the cosine.
        context: crops extend each box side by this fraction of its width / height.
        input_format: channel order of the model's input images ("RGB" or "BGR").
    """

    def __init__(self, network: nn.Module, *, num_classes: int, alpha: float = 0.5,
                 context: float = 0.1, input_format: str = "RGB"):
        super().__init__()
        self._network = [network]  # a list: not a submodule, so not saved nor trained
        self.alpha, self.context = float(alpha), float(context)
        self.flip_channels = input_format == "BGR"
        self.register_buffer("prototypes", torch.zeros(num_classes + 1, FEATURE_SIZE))

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "PrototypeCalibration":
        c = cfg.FEWSHOT.CALIBRATION
        return cls(load_feature_network(c.WEIGHTS), num_classes=num_classes, alpha=c.ALPHA,
                   context=c.CONTEXT, input_format=cfg.INPUT.FORMAT)

    @property
    def network(self) -> nn.Module:
        return self._network[0]

    def calibrated_ids(self) -> List[int]:
        """Class ids (1..K) that have a prototype."""
        return [int(k) for k in torch.nonzero(self.prototypes.norm(dim=1) > 0).flatten()]

    @torch.no_grad()
    def encode(self, image: Tensor, boxes: Tensor) -> Tensor:
        """Normalised features float [B, F] of ``boxes`` float [B, 4] (XYXY, this image's
        pixels) cropped from ``image`` float [3, H, W] (0-255, the model's input order)."""
        net = self.network.to(image.device)
        crops = [self._crop(image, box) for box in boxes]
        out = [F.normalize(net.head(net.body(torch.stack(crops[i:i + CROP_BATCH]))["res5"])
                           .mean(dim=(2, 3)), dim=1)
               for i in range(0, len(crops), CROP_BATCH)]
        return torch.cat(out) if out else image.new_zeros(0, FEATURE_SIZE)

    def _crop(self, image: Tensor, box: Tensor) -> Tensor:
        """[3, S, S] normalised RGB crop of ``box`` with its context (S: the network's
        ImageNet input side)."""
        h, w = image.shape[-2:]
        x1, y1, x2, y2 = box.tolist()
        dx, dy = self.context * (x2 - x1), self.context * (y2 - y1)
        a, b = int(max(0.0, x1 - dx)), int(max(0.0, y1 - dy))
        c, d = max(int(min(w, x2 + dx)), a + 1), max(int(min(h, y2 + dy)), b + 1)
        crop = image[:, b:d, a:c].float()
        if self.flip_channels:
            crop = crop.flip(0)
        side = self.network.input_size
        crop = F.interpolate(crop[None], size=(side, side), mode="bilinear",
                             align_corners=False)[0]
        return (crop - 127.0) / 128.0  # TensorFlow's Lite preprocessing

    @torch.no_grad()
    def set_prototypes(self, examples: Iterable[Tuple[Tensor, Tensor, Sequence[int]]]
                       ) -> Dict[int, int]:
        """Set each class's prototype from its example boxes: ``examples`` yields (image
        float [3, H, W] as ``encode`` takes it, boxes float [M, 4], class ids [M]).
        Returns {class id set: its example count}."""
        feats: Dict[int, List[Tensor]] = {}
        for image, boxes, labels in examples:
            for k, f in zip(labels, self.encode(image, boxes)):
                feats.setdefault(int(k), []).append(f)
        for k, f in feats.items():
            self.prototypes[k] = F.normalize(torch.stack(f).mean(dim=0), dim=0)
        return {k: len(f) for k, f in sorted(feats.items())}

    @torch.no_grad()
    def forward(self, images: Sequence[Tensor], detections: List[Dict[str, Tensor]]
                ) -> List[Dict[str, Tensor]]:
        """Rescore ``detections`` (per image {"boxes" [D_i, 4] in the frame of ``images``'
        image i, "scores", "labels"}) and sort them by the new score."""
        ids = self.calibrated_ids()
        if not ids:
            return detections
        out = []
        for image, det in zip(images, detections):
            chosen = torch.isin(det["labels"], torch.tensor(ids, device=det["labels"].device))
            if not chosen.any():
                out.append(det)
                continue
            feats = self.encode(image, det["boxes"][chosen])
            cos = (feats * self.prototypes[det["labels"][chosen]]).sum(dim=1)
            scores = det["scores"].clone()
            scores[chosen] = self.alpha * scores[chosen] + (1 - self.alpha) * cos
            order = scores.argsort(descending=True)
            out.append({**{k: v[order] for k, v in det.items()}, "scores": scores[order]})
        return out
