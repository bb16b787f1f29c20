"""Tiny Faster R-CNN configs and batches shared by the modeling tests (seconds on a CPU)."""
import torch

import fewshot_det
from fewshot_det.modeling import build_model

NUM_CLASSES = 3


def tiny_cfg(*opts):
    """R-18 + 16-channel FPN + 32-wide box head, few proposals: a model that runs in ms."""
    cfg = fewshot_det.get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    cfg.merge_from_list(list(opts))  # KEY, VALUE, KEY, VALUE ...
    return cfg


def tiny_model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*opts))


def image_item(h=96, w=128, boxes=(), labels=(), image_id=0, seed=0, height=None, width=None):
    """One batch dict: a random 0-255 image with the given GT (resized frame)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(3, h, w, generator=g) * 255,
        "height": height or h, "width": width or w, "image_id": image_id,
        "instances": {"gt_boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      "gt_labels": torch.tensor(labels, dtype=torch.int64)},
    }


def two_object_item(**kwargs):
    return image_item(boxes=[[10, 12, 60, 70], [50, 30, 120, 90]], labels=[1, 3], **kwargs)
