"""torchvision's MobileNetV3-Large FPN Faster R-CNNs with random but non-trivial weights, and
the configs that read their state dicts (``configs/torchvision/``)."""
import os

import torch
from torch.nn import functional as F
from torchvision.models.detection import (fasterrcnn_mobilenet_v3_large_320_fpn,
                                          fasterrcnn_mobilenet_v3_large_fpn)

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "torchvision")
# variant -> (torchvision's builder, our config)
VARIANTS = {
    "800": (fasterrcnn_mobilenet_v3_large_fpn,
            os.path.join(CONFIGS, "faster_rcnn_mobilenet_v3_large_FPN.yaml")),
    "320": (fasterrcnn_mobilenet_v3_large_320_fpn,
            os.path.join(CONFIGS, "faster_rcnn_mobilenet_v3_large_320_FPN.yaml")),
}


def smooth_noise(h, w, seed=0):
    """An image of smoothed noise (structure at a few pixels' scale): float [3, h, w] in
    [0, 1]."""
    x = torch.rand(1, 3, 2 * h, 2 * w, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(F.avg_pool2d(x, 5, 1, 2), size=(h, w), mode="bilinear")[0]


def calibration_images():
    """Two 320 x 320 ``smooth_noise`` images: float [2, 3, 320, 320]."""
    return torch.stack([smooth_noise(320, 320, seed) for seed in (100, 101)])


@torch.no_grad()
def perturb(tv):
    """Weights whose detections depend on the image, spread over many classes.

    With torchvision's initialisation and batch norms of mean 0 / var 1 (or the R-50
    test's random statistics) the 17 blocks of a MobileNetV3 drift so far that its
    features hardly depend on the image: its detections then repeat along the image with
    near-identical scores and the float32 order becomes arbitrary. So the batch norms get
    random affine parameters and the statistics of calibration images (every layer's output
    then depends on the image); the classifier is centred and scaled on the box features of
    the same images (class logits of std 3: RoIs disagree on their classes); the RPN's
    logits too (std 2, and only 5 % of the anchors above its score threshold 0.05, so that
    the threshold decides which proposals there are); larger deltas move the boxes.
    """
    images = calibration_images()
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.momentum = 1.0  # one training-mode pass sets the statistics
    tv.backbone.body.train()((images - images.mean()) / images.std())
    tv.backbone.body.eval()
    head = tv.rpn.head
    features = list(tv.backbone(tv.transform(list(images))[0].tensors).values())
    head.cls_logits.weight.mul_(2 / torch.cat([o.flatten() for o in head(features)[0]]).std())
    logits = torch.cat([o.flatten() for o in head(features)[0]])
    # 5 % of the anchors above the threshold: fewer than the top-k survive the NMS
    head.cls_logits.bias.sub_(logits.quantile(0.95) - torch.logit(torch.tensor(0.05)))
    head.bbox_pred.weight.mul_(5)
    features = []
    hook = tv.roi_heads.box_head.register_forward_hook(lambda m, i, out: features.append(out))
    tv.eval()(list(images))
    hook.remove()
    f = torch.cat(features)  # R, 1024
    p = tv.roi_heads.box_predictor
    p.cls_score.weight.mul_(3 / ((f - f.mean(0)) @ p.cls_score.weight.t()).std())
    p.cls_score.bias.copy_(-p.cls_score.weight @ f.mean(0))
    p.bbox_pred.weight.mul_(10)


def torchvision_mobilenet(path, variant, seed=0, **kwargs):
    """(eval-mode torchvision model of ``variant`` "800" or "320", its state dict written
    to ``path``); ``kwargs`` go to torchvision's builder (e.g. min_size)."""
    torch.manual_seed(seed)
    tv = VARIANTS[variant][0](weights=None, weights_backbone=None, **kwargs)
    perturb(tv)
    torch.save(tv.state_dict(), str(path))
    return tv.eval()
