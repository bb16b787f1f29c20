"""Random evaluation cases and the two references the evaluator must reproduce.

* ``random_coco_case``: COCO GT dict + results list with the traps of pycocotools (crowd
  regions, ``area`` != w*h, areas on the range bounds, tied scores, IoUs exactly on a
  threshold, duplicate GT boxes, > 100 detections in one image, empty images, images
  without detections, a class without GT, sparse category and image ids).
* ``run_pycocotools``: pycocotools' ``COCOeval`` on such a case.
* ``write_voc_tree`` + ``reference_voc_eval``: a VOC folder with ``difficult`` objects, and
  the VOC devkit algorithm (py-faster-rcnn's ``voc_eval``) rewritten plainly here.
"""
import contextlib
import copy
import io
import os
import xml.etree.ElementTree as ET

import numpy as np


def _box(rng, width, height, integer):
    side = float(np.exp(rng.uniform(np.log(3), np.log(min(width, height) * 0.8))))
    w = max(1.0, side * float(np.exp(rng.normal(0, 0.4))))
    h = max(1.0, side * float(np.exp(rng.normal(0, 0.4))))
    w, h = min(w, width - 1), min(h, height - 1)
    x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
    if integer:
        return [float(round(x)), float(round(y)), float(round(w)), float(round(h))]
    return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]


def random_coco_case(seed, num_images=14, num_classes=5, crowd_frac=0.15, id_zero=False):
    """(gt dict, results list) of one random case."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(int(c) for c in rng.choice(np.arange(1, 60), num_classes, replace=False))
    no_gt_cat = cat_ids[int(rng.integers(num_classes))]  # this class never has GT
    gt_cats = [c for c in cat_ids if c != no_gt_cat]
    image_ids = [int(i) for i in rng.choice(np.arange(1, 10 ** 6), num_images, replace=False)]
    images, anns, results = [], [], []
    for n, img_id in enumerate(image_ids):
        width, height = int(rng.integers(60, 300)), int(rng.integers(60, 300))
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": width,
                       "height": height})
        n_gt = 0 if n % 5 == 0 else int(rng.integers(1, 9))  # every 5th image: no GT
        boxes = []
        for _ in range(n_gt):
            box = list(boxes[-1][0]) if boxes and rng.random() < 0.15 else \
                _box(rng, width, height, integer=rng.random() < 0.5)  # some duplicates
            boxes.append((box, int(rng.choice(gt_cats))))
        for box, cat in boxes:
            w, h = box[2], box[3]
            r = rng.random()  # area = w*h, on a range bound (32^2, 96^2), or a mask's area
            area = w * h if r < 0.3 else 1024.0 if r < 0.4 else 9216.0 if r < 0.45 else \
                round(w * h * rng.uniform(0.3, 1.2), 2)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                         "bbox": box, "area": area, "iscrowd": int(rng.random() < crowd_frac)})
        if n % 7 == 3:
            continue  # this image gets no detections
        n_det = 130 if n == 1 else int(rng.integers(0, 30))
        for i in range(n_det):
            if boxes and (n == 1 or rng.random() < 0.6):
                box, cat = boxes[int(rng.integers(len(boxes)))]
                box = _jitter(rng, box)
                if rng.random() < 0.15:
                    cat = int(rng.choice(cat_ids))
            else:
                box, cat = _box(rng, width, height, rng.random() < 0.5), int(rng.choice(cat_ids))
            if n == 1:
                cat = boxes[0][1] if boxes else cat  # > 100 detections of one class
            results.append({"image_id": img_id, "category_id": cat, "bbox": box,
                            "score": round(float(rng.random()), 1)})  # many ties
    if id_zero and anns:
        anns[0]["id"] = 0
    rng.shuffle(images)
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"cat{c}"} for c in cat_ids]}
    return gt, results


def _jitter(rng, box):
    """A detection near a GT box; integer boxes get exact IoUs like 0.5 or 0.75."""
    x, y, w, h = box
    kind = rng.random()
    if kind < 0.2:
        return list(box)  # IoU 1
    if kind < 0.35 and float(w).is_integer():
        return [x, y, w * 2, h]  # IoU exactly 0.5
    if kind < 0.45 and float(w).is_integer() and w % 4 == 0:
        return [x, y, w * 3 / 4, h]  # IoU exactly 0.75
    s = rng.normal(0, 0.12, 4) * [w, h, w, h]
    return [round(x + s[0], 2), round(y + s[1], 2), round(max(1.0, w + s[2]), 2),
            round(max(1.0, h + s[3]), 2)]


def run_pycocotools(gt, results, cat_ids=None):
    """COCOeval (bbox) on a GT dict and a results list: the evaluator object."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if cat_ids is not None:
            ev.params.catIds = list(cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def pycocotools_class_ap(ev, k):
    """Per-class AP as detectron2 reads it from pycocotools: precision[:, :, k, all, 100]."""
    p = ev.eval["precision"][:, :, k, 0, -1]
    p = p[p > -1]
    return float(np.mean(p)) if p.size else -1.0


# ---------------------------------------------------------------------------------------
# VOC


def write_voc_tree(root, annotations, split="test", sizes=None):
    """Write Annotations/<id>.xml and ImageSets/Main/<split>.txt.

    Args:
        annotations: {image_id: [(name, [xmin, ymin, xmax, ymax], difficult), ...]}.
    """
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "ImageSets", "Main"), exist_ok=True)
    for image_id, objects in annotations.items():
        w, h = (sizes or {}).get(image_id, (500, 400))
        parts = [f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width>"
                 f"<height>{h}</height><depth>3</depth></size>"]
        for name, box, difficult in objects:
            coords = "".join(f"<{k}>{v:g}</{k}>" for k, v in
                             zip(("xmin", "ymin", "xmax", "ymax"), box))
            parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult>"
                         f"<bndbox>{coords}</bndbox></object>")
        parts.append("</annotation>")
        with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write("".join(parts))
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in annotations))


def random_voc_case(seed, classes=("cat", "dog", "person"), num_images=10):
    """({image_id: objects}, results list) with difficult objects, ties and duplicates."""
    rng = np.random.default_rng(seed)
    annotations, results = {}, []
    for n in range(num_images):
        image_id = f"{2007000 + int(rng.integers(1000)) * 10 + n}"
        objects = []
        for _ in range(int(rng.integers(0, 6))):
            x1, y1 = int(rng.integers(1, 300)), int(rng.integers(1, 250))
            x2, y2 = x1 + int(rng.integers(5, 190)), y1 + int(rng.integers(5, 140))
            objects.append((str(rng.choice(classes)), [x1, y1, x2, y2],
                            int(rng.random() < 0.25)))
        annotations[image_id] = objects
        for _ in range(int(rng.integers(0, 12))):
            if objects and rng.random() < 0.7:
                name, (x1, y1, x2, y2), _ = objects[int(rng.integers(len(objects)))]
                d = rng.integers(-6, 7, 4) if rng.random() < 0.7 else np.zeros(4, int)
                box = [x1 + d[0], y1 + d[1], max(x2 + d[2], x1 + d[0] + 1),
                       max(y2 + d[3], y1 + d[1] + 1)]
                if rng.random() < 0.2:
                    name = str(rng.choice(classes))
            else:
                x1, y1 = int(rng.integers(1, 300)), int(rng.integers(1, 250))
                box = [x1, y1, x1 + int(rng.integers(5, 150)), y1 + int(rng.integers(5, 120))]
                name = str(rng.choice(classes))
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": image_id, "category_name": name,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": round(float(rng.random()), 1)})
    return annotations, results


def _parse_voc_xml(path):
    objects = []
    for obj in ET.parse(path).findall("object"):
        bb = obj.find("bndbox")
        objects.append({"name": obj.find("name").text,
                        "difficult": int(obj.find("difficult").text),
                        "bbox": [float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]})
    return objects


def _ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = np.max(prec[rec >= t]) if np.sum(rec >= t) > 0 else 0
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def reference_voc_eval(root, split, detections, classname, ovthresh=0.5, use_07_metric=False):
    """The devkit algorithm for one class, one detection at a time.

    Args:
        detections: [(image_id, score, [x1, y1, x2, y2])] of this class, in file order.
    Returns:
        (rec, prec, ap); ap is None when the class has no non-difficult object.
    """
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt")) as f:
        image_ids = [line.strip() for line in f if line.strip()]
    gt, npos = {}, 0
    for image_id in image_ids:
        objs = [o for o in _parse_voc_xml(os.path.join(root, "Annotations", image_id + ".xml"))
                if o["name"] == classname]
        gt[image_id] = {"bbox": np.array([o["bbox"] for o in objs]).reshape(-1, 4),
                        "difficult": np.array([o["difficult"] for o in objs], dtype=bool),
                        "det": [False] * len(objs)}
        npos += int(sum(1 for o in objs if not o["difficult"]))
    conf = np.array([d[1] for d in detections])
    order = np.argsort(-conf, kind="mergesort")  # MATLAB's sort is stable
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for n, i in enumerate(order):
        image_id, _, bb = detections[i]
        r = gt[image_id]
        ovmax, jmax = -np.inf, -1
        if r["bbox"].size:
            g = r["bbox"]
            iw = np.maximum(np.minimum(g[:, 2], bb[2]) - np.maximum(g[:, 0], bb[0]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(g[:, 3], bb[3]) - np.maximum(g[:, 1], bb[1]) + 1.0, 0.0)
            inter = iw * ih
            union = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                     + (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0) - inter)
            ov = inter / union
            ovmax, jmax = np.max(ov), int(np.argmax(ov))
        if ovmax > ovthresh:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[n] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[n] = 1.0
        else:
            fp[n] = 1.0
    if npos == 0:
        return None, None, None
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, _ap(rec, prec, use_07_metric)
