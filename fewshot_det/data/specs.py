"""Dataset specs: use a folder straight from YAML, with no registration code.

    voc:PATH:SPLIT              Pascal VOC layout, ImageSets/Main/SPLIT.txt
    coco:JSON[:IMAGE_ROOT]      COCO instances json (image folder guessed when omitted)
    yolo:PATH:SPLIT             ultralytics / Roboflow layout (data.yaml or images/SPLIT)

``PATH`` may be relative (to the working directory) and may start with ``~``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Tuple

from .readers import load_coco_json, load_voc, load_yolo

SPEC_KINDS = ("voc", "coco", "yolo")


def is_spec(name: str) -> bool:
    return name.split(":", 1)[0] in SPEC_KINDS and ":" in name


def parse_spec(spec: str) -> Tuple[str, Dict[str, str]]:
    """Split a spec into (kind, arguments); raises ``ValueError`` naming the spec."""
    kind, _, rest = spec.partition(":")
    if kind in ("voc", "yolo"):
        path, sep, split = rest.rpartition(":")
        if not sep or not path or not split:
            raise ValueError(f"dataset spec {spec!r}: expected '{kind}:PATH:SPLIT'")
        return kind, {"root": os.path.expanduser(path), "split": split}
    if kind == "coco":
        json_part, sep, image_root = rest.partition(".json:")
        json_file = json_part + ".json" if sep else rest
        if not json_file.endswith(".json"):
            raise ValueError(f"dataset spec {spec!r}: expected 'coco:JSON[:IMAGE_ROOT]' "
                             "with a .json file")
        return kind, {"json_file": os.path.expanduser(json_file),
                      "image_root": os.path.expanduser(image_root) if image_root else None}
    raise ValueError(f"dataset spec {spec!r}: kind must be one of {SPEC_KINDS}")


def spec_paths(spec: str) -> List[str]:
    """The files and folders ``spec`` reads from, for a check before anything is loaded."""
    kind, args = parse_spec(spec)
    if kind == "coco":
        return [args["json_file"]] + ([args["image_root"]] if args["image_root"] else [])
    return [args["root"]]


def spec_loader(spec: str) -> Callable[..., Tuple[List[dict], Dict[str, Any]]]:
    """A catalog loader for ``spec``: ``loader(**options) -> (records, metadata fields)``."""
    kind, args = parse_spec(spec)

    def load(check_images: bool = True, box_policy: str = "clip"):
        opts = {"check_images": check_images, "box_policy": box_policy}
        if kind == "coco":
            return load_coco_json(args["json_file"], args["image_root"], **opts)
        if kind == "voc":
            records, classes = load_voc(args["root"], args["split"], **opts)
            fields = {"evaluator_type": "voc", "dataset_root": args["root"],
                      "split": args["split"]}
        else:
            records, classes = load_yolo(args["root"], args["split"], **opts)
            fields = {"evaluator_type": "voc", "dataset_root": args["root"],
                      "split": args["split"]}
        fields.update(thing_classes=classes,
                      thing_dataset_id_to_contiguous_id={i: i for i in range(1, len(classes) + 1)})
        return records, fields

    return load
