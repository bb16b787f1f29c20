"""Support files: example boxes of classes, by name, as JSON (no torch, never a pickle).

A support file is what a support-conditioned model (or a cosine classifier's imprinting)
needs to detect classes it was not trained on, kept on disk so that a tool, the web app
or a script gives the same examples to the model::

    {"format": "fewshot_det.supports", "version": 1,
     "classes": {"bird_nest": [{"image": "photos/pole_003.jpg", "box": [x1, y1, x2, y2]},
                               ...],
                 "insulator": [...]}}

* ``image`` is relative to the folder holding the file (an absolute path is accepted on
  reading, and written when the image lies on another drive);
* ``box`` is absolute ``XYXY`` in the image's stored pixel grid (EXIF orientation is
  ignored, as everywhere in the package), with positive area, inside the image.

    classes = read_support_file("supports.json")            # {name: [SupportExample]}
    supports = load_support_images(classes, image_format=cfg.INPUT.FORMAT)
    predictor = Predictor(cfg, supports=supports)           # {name: [(image, box)]}
    write_support_file("supports.json", classes)

Every error is a ``DataError`` (a ``ValueError``) naming the file, the class and the
example ("class 'bird_nest', example 2 of 3: ...").
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .records import DataError

FORMAT = "fewshot_det.supports"
VERSION = 1


@dataclass(frozen=True)
class SupportExample:
    """One example object: an image file (absolute path) and a box in its pixels.

    Attributes:
        image: the image file, absolute.
        box: (x1, y1, x2, y2) floats, absolute XYXY pixels.
    """

    image: str
    box: Tuple[float, float, float, float]


SupportClasses = Dict[str, List[SupportExample]]


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of an image file, read from its header (pixels are not decoded).

    Raises:
        DataError: the file is missing or not an image Pillow can read.
    """
    from PIL import Image

    if not os.path.isfile(path):
        raise DataError(f"no such image file: {path}")
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as e:  # Pillow raises many types for foreign or broken files
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def check_box(box, size: Optional[Tuple[int, int]], where: str) -> Tuple[float, ...]:
    """``box`` as 4 floats, checked: finite, positive area, inside a ``size`` image.

    Args:
        box: the box as written ([x1, y1, x2, y2]).
        size: (width, height) of its image, or None to skip the bounds check.
        where: the start of the error message (file, class, example).
    Raises:
        DataError: naming ``where`` and the box.
    """
    if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 4:
        raise DataError(f"{where}: a box is 4 numbers [x1, y1, x2, y2], got {box!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        raise DataError(f"{where}: a box is 4 numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise DataError(f"{where}: box {list(box)} has a non-finite coordinate")
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{where}: box {list(box)} has no area (x2 must exceed x1 and y2 "
                        f"exceed y1)")
    if size is not None:
        w, h = size
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise DataError(f"{where}: box {list(box)} is not inside its {w} x {h} image")
    return x1, y1, x2, y2


def check_class_name(name, where: str) -> str:
    """A class name: a non-empty string without surrounding spaces."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{where}: a class name must be a non-empty string, got {name!r}")
    if name != name.strip():
        raise DataError(f"{where}: class name {name!r} has leading or trailing spaces")
    return name


def _unique_keys(pairs: List[Tuple[str, object]]) -> dict:
    """json object hook: a repeated key would silently drop a class's examples."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DataError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def parse_support_json(data, folder: str, source: str, *,
                       check_images: bool = True) -> SupportClasses:
    """The classes of a parsed support file (see the module doc).

    Args:
        data: the JSON value.
        folder: what relative image paths are relative to.
        source: the file's name, for messages.
        check_images: open each image's header to check its boxes lie inside it.
    Raises:
        DataError: naming ``source``, the class and the example.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{source}: not a support file (expected a JSON object with "
                        f"\"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise DataError(f"{source}: support file version {data.get('version')!r} is not "
                        f"supported (this version of fewshot_det reads version {VERSION})")
    classes = data.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise DataError(f"{source}: \"classes\" must be a non-empty object "
                        f"{{class name: [examples]}}")
    sizes: Dict[str, Tuple[int, int]] = {}
    out: SupportClasses = {}
    for name, examples in classes.items():
        check_class_name(name, source)
        if not isinstance(examples, list) or not examples:
            raise DataError(f"{source}: class {name!r} needs a non-empty list of examples")
        out[name] = [_parse_example(ex, folder, f"{source}: class {name!r}, example {i} of "
                                               f"{len(examples)}", sizes, check_images)
                     for i, ex in enumerate(examples, start=1)]
    return out


def _parse_example(example, folder: str, where: str, sizes: Dict[str, Tuple[int, int]],
                   check_images: bool) -> SupportExample:
    if not isinstance(example, dict) or set(example) != {"image", "box"}:
        raise DataError(f"{where}: expected {{\"image\": PATH, \"box\": [x1, y1, x2, y2]}}, "
                        f"got {example!r}")
    image = example["image"]
    if not isinstance(image, str) or not image:
        raise DataError(f"{where}: \"image\" must be a file path, got {image!r}")
    path = os.path.normpath(os.path.join(folder, os.path.expanduser(image)))
    size = None
    if check_images:
        if path not in sizes:
            try:
                sizes[path] = image_size(path)
            except DataError as e:
                raise DataError(f"{where}: {e}") from e
        size = sizes[path]
    return SupportExample(image=path, box=check_box(example["box"], size, where))


def read_support_file(path: str, *, check_images: bool = True) -> SupportClasses:
    """Read and check a support file.

    Args:
        path: the JSON file.
        check_images: check each image exists and holds its boxes (reads image headers).
    Returns:
        {class name: [SupportExample]} in the file's order, image paths absolute.
    Raises:
        DataError: the file is missing, not JSON, not a support file, or an example is
            malformed (naming the class and the example).
    """
    if not os.path.isfile(path):
        raise DataError(f"support file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e})") from e
    except DataError as e:
        raise DataError(f"{path}: {e}") from e
    folder = os.path.dirname(os.path.abspath(path))
    return parse_support_json(data, folder, path, check_images=check_images)


def support_json(classes: Mapping[str, Sequence[SupportExample]], folder: str) -> dict:
    """The JSON value of a support file kept in ``folder`` (image paths relative to it)."""
    out: Dict[str, list] = {}
    for name, examples in classes.items():
        check_class_name(name, "support file")
        if not examples:
            raise DataError(f"support file: class {name!r} has no example")
        out[name] = [{"image": _relative(ex.image, folder), "box": [float(v) for v in ex.box]}
                     for ex in examples]
    return {"format": FORMAT, "version": VERSION, "classes": out}


def _relative(image: str, folder: str) -> str:
    try:
        return os.path.relpath(os.path.abspath(image), folder).replace(os.sep, "/")
    except ValueError:  # another drive (Windows): no relative path exists
        return os.path.abspath(image)


def write_support_file(path: str, classes: Mapping[str, Sequence[SupportExample]], *,
                       check_images: bool = True) -> None:
    """Write ``classes`` to ``path`` (atomically), checked as ``read_support_file`` would.

    Raises:
        DataError: an empty class, a bad name, or a box that is malformed or (with
            ``check_images``) not inside its image, naming the class and the example.
    """
    from ..utils.files import atomic_write_text

    folder = os.path.dirname(os.path.abspath(path))
    data = support_json(classes, folder)
    # Checked as read back: a file written here always loads.
    parse_support_json(data, folder, path, check_images=check_images)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def load_support_images(classes: Mapping[str, Sequence[SupportExample]],
                        image_format: str = "BGR") -> Dict[str, List[tuple]]:
    """The examples as ``Predictor`` takes them: {name: [(H x W x 3 uint8, [x1, y1, x2, y2])]}.

    Args:
        image_format: INPUT.FORMAT, "BGR" or "RGB".
    Raises:
        DataError: an image cannot be decoded, naming the class and the example.
    """
    import cv2
    import numpy as np

    from .image_format import truncation_problem

    cache: Dict[str, "np.ndarray"] = {}
    out: Dict[str, List[tuple]] = {}
    for name, examples in classes.items():
        out[name] = []
        for i, ex in enumerate(examples, start=1):
            if ex.image not in cache:
                where = f"class {name!r}, example {i} of {len(examples)}"
                problem = truncation_problem(ex.image) if os.path.isfile(ex.image) else ""
                if problem:  # OpenCV would only warn and return a partly grey image
                    raise DataError(f"{where}: {ex.image} is cut short ({problem})")
                image = cv2.imread(ex.image, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
                if image is None:
                    raise DataError(f"{where}: cannot read image {ex.image}")
                cache[ex.image] = np.ascontiguousarray(
                    image[:, :, ::-1] if image_format == "RGB" else image)
            out[name].append((cache[ex.image], list(ex.box)))
    return out


__all__ = ["FORMAT", "VERSION", "SupportExample", "SupportClasses", "read_support_file",
           "write_support_file", "parse_support_json", "support_json", "load_support_images",
           "check_box", "check_class_name", "image_size"]
