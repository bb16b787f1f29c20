"""Pascal VOC layout: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

Boxes are kept exactly as the XML writes them (1-based pixel coordinates, no -1 shift), so
the VOC-devkit evaluation sees the same numbers the devkit would.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence, Tuple

from ..records import (DataError, IMAGE_EXTENSIONS, check_image_files, find_class_list,
                       image_size, sanitize_boxes, warn_lookalike_classes)

logger = logging.getLogger(__name__)


def read_split_ids(root: str, split: str) -> List[str]:
    """Image ids (file stems) listed in ``ImageSets/Main/<split>.txt``."""
    path = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        main = os.path.join(root, "ImageSets", "Main")
        have = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt")) \
            if os.path.isdir(main) else []
        raise DataError(f"VOC split file not found: {path} (splits present: {have})")
    with open(path) as f:
        # Lines may carry a second column (per-class files: "id  1"); the id comes first.
        return [line.split()[0] for line in f if line.strip()]


def _parse_xml(xml_path: str) -> Tuple[Optional[Tuple[int, int]], str, List[dict]]:
    """(size or None, image file name, objects[{name, bbox, difficult}]) of one XML."""
    if not os.path.isfile(xml_path):
        raise DataError(f"VOC annotation file not found: {xml_path}")
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as e:
        raise DataError(f"cannot parse VOC annotation {xml_path}: {e}") from e
    size = tree.find("size")
    wh = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        wh = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
        if wh[0] <= 0 or wh[1] <= 0:
            wh = None  # some tools write 0x0; take the size from the image instead
    objects = []
    for obj in tree.findall("object"):
        box = obj.find("bndbox")
        name = (obj.findtext("name") or "").strip()
        if box is None or not name:
            raise DataError(f"{xml_path}: an <object> lacks <name> or <bndbox>")
        try:
            bbox = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as e:
            raise DataError(f"{xml_path}: bad <bndbox> coordinates for {name!r}") from e
        difficult = int(float(obj.findtext("difficult") or 0))
        objects.append({"name": name, "bbox": bbox, "difficult": difficult})
    return wh, (tree.findtext("filename") or "").strip(), objects


def _image_path(root: str, image_id: str, xml_filename: str) -> str:
    folder = os.path.join(root, "JPEGImages")
    if xml_filename and os.path.isfile(os.path.join(folder, xml_filename)):
        return os.path.join(folder, xml_filename)
    for ext in IMAGE_EXTENSIONS:
        path = os.path.join(folder, image_id + ext)
        if os.path.isfile(path):
            return path
    return os.path.join(folder, image_id + ".jpg")  # reported as missing by the checks


def voc_class_names(root: str) -> List[str]:
    """``classes.txt`` beside the data, else the sorted names found in ``Annotations/``."""
    names = find_class_list(root, os.path.dirname(os.path.abspath(root)))
    if names:
        return names
    ann_dir = os.path.join(root, "Annotations")
    if not os.path.isdir(ann_dir):
        raise DataError(f"not a VOC folder (no Annotations/): {root}")
    files_by_class = {}
    for f in sorted(os.listdir(ann_dir)):
        if f.endswith(".xml"):
            for o in _parse_xml(os.path.join(ann_dir, f))[2]:
                files_by_class.setdefault(o["name"], []).append(f)
    names = sorted(files_by_class)
    logger.info("%s: no classes.txt; class order = sorted names in Annotations/: %s",
                root, names)
    warn_lookalike_classes(files_by_class, root)
    return names


def load_voc(root: str, split: str, class_names: Optional[Sequence[str]] = None, *,
             check_images: bool = True, box_policy: str = "clip"
             ) -> Tuple[List[dict], List[str]]:
    """Read one split of a VOC-layout folder.

    Args:
        root: folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``.
        split: name of a file in ``ImageSets/Main/`` (``train``, ``test``, ...).
        class_names: class order (label i+1 = class_names[i]); default: ``voc_class_names``.
        check_images: open each image header to check existence, truncation and size.
        box_policy: see ``records.sanitize_boxes``.
    Returns:
        (records, class_names). ``image_id`` is the file stem.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DataError(f"VOC dataset folder not found: {root}")
    class_names = list(class_names) if class_names else voc_class_names(root)
    label_of = {name: i + 1 for i, name in enumerate(class_names)}
    records = []
    for image_id in read_split_ids(root, split):
        xml_path = os.path.join(root, "Annotations", image_id + ".xml")
        wh, xml_filename, objects = _parse_xml(xml_path)
        file_name = _image_path(root, image_id, xml_filename)
        if wh is None:
            wh = image_size(file_name)
        annotations = []
        for obj in objects:
            if obj["name"] not in label_of:
                raise DataError(f"{xml_path}: class {obj['name']!r} is not in the class list "
                                f"{class_names}")
            annotations.append({"bbox": obj["bbox"], "category_id": label_of[obj["name"]],
                                "iscrowd": 0, "difficult": obj["difficult"]})
        records.append({"file_name": file_name, "image_id": image_id, "width": wh[0],
                        "height": wh[1], "annotations": annotations})
    if check_images:
        check_image_files(records)
    sanitize_boxes(records, box_policy, f"{root} [{split}]")
    return records, class_names
