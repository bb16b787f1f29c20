"""Tiny siamese / Faster R-CNN configs, support sets and an EDP-like VOC tree for the tests."""
import os

import cv2
import numpy as np
import torch

import fewshot_det
from fewshot_det.modeling import build_model

EDP_CLASSES = ["pole", "insulator", "bird_nest"]  # "pole" base, the other two novel
SIAMESE = ["MODEL.META_ARCHITECTURE", "SiameseRCNN",
           "MODEL.ROI_HEADS.NAME", "SiameseROIHeads",
           "MODEL.ROI_BOX_HEAD.PREDICTOR", "PrototypeCosineOutputLayers"]


def tiny_cfg(*opts, num_classes=3, siamese=True):
    """R-18, 16-channel FPN (P3-P6), 32-wide box head, few proposals: runs in ms."""
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN",
        "MODEL.BACKBONE.FREEZE_AT", "0",
        "MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4', 'res5']",
        "MODEL.FPN.IN_FEATURES", "['res3', 'res4', 'res5']", "MODEL.FPN.OUT_CHANNELS", "16",
        "MODEL.RPN.IN_FEATURES", "['p3', 'p4', 'p5', 'p6']",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128]]",
        "MODEL.ROI_HEADS.IN_FEATURES", "['p3', 'p4', 'p5']",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes),
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "100", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
        "FEWSHOT.SUPPORT.SIZE", "64"] + (SIAMESE if siamese else []) + list(opts))
    return cfg


def tiny_model(*opts, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*opts, **kw))


def query(h=96, w=128, boxes=(), labels=(), image_id=0, seed=0):
    """One batch dict with a random 0-255 image and the given GT (resized frame)."""
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(3, h, w, generator=g) * 255, "height": h, "width": w,
            "image_id": image_id,
            "instances": {"gt_boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                          "gt_labels": torch.tensor(labels, dtype=torch.int64)}}


def supports(class_ids, shots=2, size=64, seed=0):
    """An episode's support dict: random crops, one centred box per crop."""
    g = torch.Generator().manual_seed(seed)
    m = len(class_ids) * shots
    return {"images": torch.rand(m, 3, size, size, generator=g) * 255,
            "boxes": torch.tensor([[8.0, 10.0, size - 8.0, size - 12.0]] * m),
            "labels": torch.tensor([c for c in class_ids for _ in range(shots)]),
            "class_ids": torch.tensor(class_ids)}


def _draw(img, box, k):
    x1, y1, x2, y2 = (int(v) for v in box)
    colour = [(40, 40, 200), (200, 200, 40), (30, 120, 30)][k % 3]
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, -1)


def make_edp_tree(root, num_train=12, num_test=4, classes=EDP_CLASSES, scale=1):
    """A VOC tree like a user's EDP set: classes pole (base), insulator and bird_nest
    (novel), drawn as coloured rectangles on noise; ImageSets trainval and test.
    ``scale`` multiplies the 96 x 80 images and their boxes."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {"trainval": [], "test": []}
    for i in range(num_train + num_test):
        split = "trainval" if i < num_train else "test"
        stem = f"{split}_{i:03d}"
        img = rng.integers(0, 255, (80 * scale, 96 * scale, 3), dtype=np.uint8)
        objects = []
        for k, name in enumerate(classes):
            if (i + k) % 3 == 2:
                continue  # every image holds two of the three classes
            x1, y1 = 4 + 30 * k + int(rng.integers(0, 4)), 8 + int(rng.integers(0, 20))
            box = [v * scale for v in (x1, y1, x1 + 22, y1 + 30 + k * 8)]
            _draw(img, box, k)
            objects.append((name, box))
        cv2.imwrite(os.path.join(root, "JPEGImages", stem + ".jpg"), img)
        objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}"
                       f"</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
                       f"</bndbox></object>" for n, b in objects)
        with open(os.path.join(root, "Annotations", stem + ".xml"), "w") as f:
            f.write(f"<annotation><filename>{stem}.jpg</filename><size><width>{96 * scale}"
                    f"</width><height>{80 * scale}</height><depth>3</depth></size>{objs}"
                    f"</annotation>")
        splits[split].append(stem)
    for split, stems in splits.items():
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("\n".join(stems) + "\n")
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    return str(root)
