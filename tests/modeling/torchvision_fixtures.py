"""A torchvision fasterrcnn_resnet50_fpn with random but non-trivial weights, its state
dict on disk, and the config that reads it (``configs/torchvision/``)."""
import os

import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "torchvision",
                      "faster_rcnn_R_50_FPN.yaml")
TV_MEAN, TV_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def perturb(tv):
    """Non-trivial batch norms; tame logits so scores are neither saturated nor uniform."""
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        tv.rpn.head.cls_logits.weight.mul_(0.01)
        tv.roi_heads.box_predictor.cls_score.weight.mul_(0.2)
        tv.roi_heads.box_predictor.bbox_pred.weight.mul_(10.0)


def torchvision_model(path, *, min_size, max_size, seed=0):
    """(eval-mode torchvision model, its state dict written to ``path``)."""
    torch.manual_seed(seed)
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=min_size,
                                 max_size=max_size)
    perturb(tv)
    torch.save(tv.state_dict(), str(path))
    return tv.eval()


def to_float64(ours):
    """``ours`` in float64 with torchvision's exact normalisation constants."""
    ours = ours.double()
    ours.pixel_mean = torch.tensor(TV_MEAN, dtype=torch.float64).view(3, 1, 1) * 255
    ours.pixel_std = torch.tensor(TV_STD, dtype=torch.float64).view(3, 1, 1) * 255
    return ours
