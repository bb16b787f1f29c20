"""Dense test scenes: g x g mosaics of a VOC test split, for proposal recall in clutter.

    python benchmarks/dense_scenes.py datasets/shapes output/shapes_dense3 --grid 3

Why: the synthetic test images hold 1-5 objects each, so any RPN's top 100 proposals
already cover 98 % of them at IoU 0.5, and AR@100 then measures box placement only. Tiling
g x g test images into one keeps every object at its size and appearance but puts 9-45
of them (grid 3) in one image, where a proposal generator must choose which objects get
its 100 boxes: the regime in which a support-conditioned ranking can show at k = 100.

Mosaic ``m`` holds test images ``m*g*g .. m*g*g + g*g - 1`` of the split's order, row by
row, each at the top-left of a cell as large as the largest image (zero padding). Boxes
are shifted by the cell's origin; names and ``difficult`` flags are kept. The class list
(``classes.txt``) and the few-shot split file (``fewshot_split.json``) are copied, so the
folder reads as ``voc:DST:test`` with the same classes. A trailing incomplete mosaic is
dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from typing import List

import cv2
import numpy as np

COPIED = ("classes.txt", "fewshot_split.json")
MANIFEST = "mosaics.json"  # written last: its presence marks a complete folder


def _annotation_xml(filename: str, width: int, height: int, objects: List[dict]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        box = ET.SubElement(node, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["bbox"]):
            ET.SubElement(box, key).text = f"{value:g}"
    return ET.tostring(root)


def write_mosaics(src: str, dst: str, grid: int, split: str = "test") -> str:
    """Write the mosaics of ``src``'s ``split`` to ``dst`` (a VOC folder, split "test").

    Skipped when ``dst`` already holds a complete set made with the same source and grid.

    Returns:
        ``dst``.
    """
    from fewshot_det.data.readers.voc import load_voc

    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    want = {"source": os.path.abspath(src), "split": split, "grid": grid}
    manifest = os.path.join(dst, MANIFEST)
    if os.path.isfile(manifest):
        with open(manifest) as f:
            if {k: v for k, v in json.load(f).items() if k in want} == want:
                return dst
        raise FileExistsError(f"{dst} holds mosaics of another source or grid ({manifest}); "
                              f"choose another folder")
    records, names = load_voc(src, split)
    per = grid * grid
    if len(records) < per:
        raise ValueError(f"{src} [{split}] has {len(records)} images, a {grid}x{grid} mosaic "
                         f"needs {per}")
    cell_w = max(r["width"] for r in records)
    cell_h = max(r["height"] for r in records)
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".mosaics-", dir=parent)
    try:
        for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(tmp, sub))
        stems = []
        for m in range(len(records) // per):
            canvas = np.zeros((cell_h * grid, cell_w * grid, 3), np.uint8)
            objects = []
            for t, record in enumerate(records[m * per:(m + 1) * per]):
                y0, x0 = (t // grid) * cell_h, (t % grid) * cell_w
                image = cv2.imread(record["file_name"], cv2.IMREAD_COLOR)
                if image is None:
                    raise OSError(f"cannot read image {record['file_name']}")
                canvas[y0:y0 + image.shape[0], x0:x0 + image.shape[1]] = image
                for a in record["annotations"]:
                    x1, y1, x2, y2 = a["bbox"]
                    objects.append({"name": names[a["category_id"] - 1],
                                    "difficult": a.get("difficult", 0),
                                    "bbox": (x1 + x0, y1 + y0, x2 + x0, y2 + y0)})
            stem = f"mosaic_{m:05d}"
            if not cv2.imwrite(os.path.join(tmp, "JPEGImages", stem + ".jpg"), canvas,
                               [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write mosaic {stem}.jpg under {tmp}")
            with open(os.path.join(tmp, "Annotations", stem + ".xml"), "wb") as f:
                f.write(_annotation_xml(stem + ".jpg", canvas.shape[1], canvas.shape[0],
                                        objects))
            stems.append(stem)
        with open(os.path.join(tmp, "ImageSets", "Main", "test.txt"), "w") as f:
            f.write("\n".join(stems) + "\n")
        for name in COPIED:
            if os.path.isfile(os.path.join(src, name)):
                shutil.copy(os.path.join(src, name), tmp)
        if not os.path.isfile(os.path.join(tmp, "classes.txt")):
            with open(os.path.join(tmp, "classes.txt"), "w") as f:
                f.write("\n".join(names) + "\n")
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump({**want, "images": len(stems)}, f)
        if os.path.isdir(dst):
            shutil.rmtree(dst)  # an incomplete earlier attempt (no manifest)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="a VOC folder")
    p.add_argument("dst", help="the mosaic folder to write")
    p.add_argument("--grid", type=int, default=3)
    p.add_argument("--split", default="test")
    args = p.parse_args(argv)
    print(write_mosaics(args.src, args.dst, args.grid, args.split))


if __name__ == "__main__":
    main()
