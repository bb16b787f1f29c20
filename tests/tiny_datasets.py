"""Tiny VOC / COCO / YOLO trees written by the tests themselves."""
import json
import os

import cv2
import numpy as np


def write_image(path, width, height, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return str(path)


def voc_xml(filename, width, height, objects):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects)
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" \
        if width else ""
    return f"<annotation><filename>{filename}</filename>{size}{objs}</annotation>"


def make_voc(root, images, split="train", classes=None):
    """images: {stem: (width, height, [(name, [x1,y1,x2,y2], difficult)])}."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i, (stem, (w, h, objects)) in enumerate(images.items()):
        write_image(os.path.join(root, "JPEGImages", stem + ".jpg"), w, h, seed=i)
        with open(os.path.join(root, "Annotations", stem + ".xml"), "w") as f:
            f.write(voc_xml(stem + ".jpg", w, h, objects))
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("\n".join(images) + "\n")
    if classes:
        with open(os.path.join(root, "classes.txt"), "w") as f:
            f.write("\n".join(classes) + "\n")
    return str(root)


def make_coco(root, images, categories, annotations, split="val"):
    """Writes root/annotations/instances_{split}.json and root/{split}/*.jpg."""
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for i, img in enumerate(images):
        write_image(os.path.join(root, split, img["file_name"]), img["width"], img["height"], i)
    path = os.path.join(root, "annotations", f"instances_{split}.json")
    with open(path, "w") as f:
        json.dump({"images": images, "categories": categories, "annotations": annotations}, f)
    return path


def make_yolo(root, split, images, names, roboflow=False):
    """images: {stem: (width, height, ["cls cx cy w h", ...] or None for no label file)}."""
    img_dir = os.path.join(root, split, "images") if roboflow else os.path.join(root, "images", split)
    lbl_dir = img_dir.replace(os.sep + "images", os.sep + "labels")
    os.makedirs(lbl_dir, exist_ok=True)
    for i, (stem, (w, h, lines)) in enumerate(images.items()):
        write_image(os.path.join(img_dir, stem + ".jpg"), w, h, i)
        if lines is not None:
            with open(os.path.join(lbl_dir, stem + ".txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
    rel = f"../{split}/images" if roboflow else f"images/{split}"
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write(f"names: {json.dumps(names)}\n{split}: {rel}\n")
    return str(root)
