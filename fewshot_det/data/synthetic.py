"""A deterministic shapes-on-clutter detection dataset, so every tool runs with no download.

Twelve shape classes (``SYNTHETIC_CLASSES``: circle, square, triangle, star, hexagon, cross,
ring, ellipse, diamond, arrow, heart, crescent; novel: star, arrow, heart) are drawn with
random size (about 28-120 px on 256 px images), rotation, colour and shading, 1-5 per image
with limited occlusion (every earlier shape stays >= 70 % visible), on cluttered
backgrounds (gradients, low-frequency colour noise, thin lines and arcs, soft blobs,
sensor noise). Every 20th image has no object (a negative sample).

Version 2 (the current one) is version 1 made learnable within the quick-start budget
(15 CPU minutes from random initialisation): shapes no smaller than 28 px (below ~20 px a
JPEG'd star, hexagon and circle are hard to tell apart even for a person), at most 5 per
image, stronger colour contrast with what lies under a shape, less line clutter, and 2000
training images by default (rendering costs ~10 ms an image; more images do not slow
training, they only reduce over-fitting).

Layout written (Pascal VOC plus COCO json)::

    ROOT/JPEGImages/{split}_{i:06d}.jpg
    ROOT/Annotations/{split}_{i:06d}.xml      VOC boxes: 1-based inclusive pixel indices
    ROOT/ImageSets/Main/{train,test,trainval}.txt   (trainval = train)
    ROOT/annotations/instances_{train,test}.json    COCO: bbox [x, y, w, h], file_name
                                                    relative to ROOT/JPEGImages
    ROOT/classes.txt  ROOT/fewshot_split.json  ROOT/manifest.json (written last)

Image ``i`` of a split is drawn from a generator seeded with ``(seed, split, i)``, so a
seed gives byte-identical files, and a larger ``num_train`` only appends images. No torch.
"""
import json
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..utils.files import atomic_write_text
from .catalog import DatasetCatalog
from .fewshot.class_splits import SYNTHETIC_CLASSES, SYNTHETIC_NOVEL_CLASSES
from .readers import load_coco_json, load_voc
from .root import dataset_root

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "render_image",
    "generate_synthetic_dataset",
    "ensure_synthetic_dataset",
    "register_synthetic",
]

GENERATOR_VERSION = 2
SPLITS = ("train", "test")
_SPLIT_CODE = {"train": 0, "test": 1}
_MANIFEST = "manifest.json"
_IN_PROGRESS = ".generating"
_EMPTY_EVERY = 20  # image i with i % 20 == 19 has no object
_MAX_OBJECTS = 5
_MIN_SIDE, _MAX_SIDE = 28, 120  # shape diameter range in px on a 256-px image
_MIN_CONTRAST = 110  # min BGR distance between a shape's colour and what lies under it
_MIN_VISIBLE = 0.7
_PARALLEL_FROM = 400  # images in a split; below, a helper process costs more than it saves


# ------------------------------------------------------------------------------ shapes
def _ngon(n: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), -radius * np.sin(t)], axis=1)


def _unit_shape(name: str, rng: np.random.Generator) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(filled polygons, hole polygons) of one shape, in unit coordinates (radius <= 1).

    Shape parameters are drawn from fixed ranges chosen so classes never look alike (an
    ellipse is at least 1.5x longer than wide, a diamond is never a square, ...).
    """
    if name == "circle":
        return [_ngon(64)], []
    if name == "square":
        return [_ngon(4, phase=np.pi / 4)], []
    if name == "triangle":
        return [_ngon(3)], []
    if name == "hexagon":
        return [_ngon(6)], []
    if name == "star":
        outer, inner = _ngon(5), _ngon(5, rng.uniform(0.38, 0.5), np.pi / 2 + np.pi / 5)
        return [np.stack([outer, inner], axis=1).reshape(-1, 2)], []
    if name == "cross":
        w = rng.uniform(0.22, 0.34)
        pts = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1),
               (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]
        return [np.array(pts, dtype=np.float64)], []
    if name == "ring":
        return [_ngon(64)], [_ngon(64, rng.uniform(0.5, 0.65))]
    if name == "ellipse":
        return [_ngon(64) * [1.0, rng.uniform(0.4, 0.62)]], []
    if name == "diamond":
        b = rng.uniform(0.45, 0.62)
        return [np.array([(1, 0), (0, b), (-1, 0), (0, -b)], dtype=np.float64)], []
    if name == "arrow":
        s, h = rng.uniform(0.16, 0.24), rng.uniform(0.5, 0.65)
        pts = [(-1, s), (0.15, s), (0.15, h), (1, 0), (0.15, -h), (0.15, -s), (-1, -s)]
        return [np.array(pts, dtype=np.float64)], []
    if name == "heart":
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [np.stack([x, y + 2.5], axis=1) / 17.5], []
    if name == "crescent":
        r, d = rng.uniform(0.72, 0.85), rng.uniform(0.35, 0.5)
        return [_ngon(64)], [_ngon(64, r) + [d, 0.0]]
    raise ValueError(f"no drawing for synthetic class {name!r}")


def _shape_mask(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size] coverage in [0, 1] of one shape at a random rotation and
    diameter, anti-aliased (the shape is placed on the image later)."""
    fills, holes = _unit_shape(name, rng)
    # Scale the filled outline into the unit disc so any rotation fits the canvas.
    radius = max(float(np.linalg.norm(p, axis=1).max()) for p in fills)
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    side = int(size) + 4
    mask = np.zeros((side, side), np.uint8)
    for polys, value in ((fills, 255), (holes, 0)):
        for p in polys:
            pts = (p / radius) @ rot.T * (size / 2.0) + side / 2.0
            # 4 fractional bits (shift=4): sub-pixel vertices keep small shapes symmetric.
            cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], value, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255.0


# -------------------------------------------------------------------------- backgrounds
def _random_colour(rng: np.random.Generator, sat=(0.3, 1.0), val=(0.25, 1.0)) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3] BGR clutter: gradient + colour noise + lines, arcs, blobs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    img = _random_colour(rng) * (1 - ramp) + _random_colour(rng) * ramp
    cells = int(rng.integers(3, 9))
    noise = rng.normal(0, rng.uniform(10, 35), (cells, cells, 3)).astype(np.float32)
    img += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 4))):  # soft blobs: no sharp edge, never a class
        blob = np.zeros((size, size), np.float32)
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(blob, c, int(rng.integers(size // 16, size // 5)), 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), rng.uniform(size / 40, size / 15))[..., None]
        img = img * (1 - 0.6 * blob) + _random_colour(rng) * 0.6 * blob
    for _ in range(int(rng.integers(1, 7))):  # thin straight lines
        p1, p2 = (tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2))
        cv2.line(img, p1, p2, _random_colour(rng).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # thin partial arcs (outlines, not rings)
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 20, size // 4, 2))
        start = float(rng.uniform(0, 360))
        end = start + float(rng.uniform(60, 240))
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), start, end,
                    _random_colour(rng).tolist(), 1, cv2.LINE_AA)
    return img


# ------------------------------------------------------------------------------ objects
def _place(rng, masks, coverage, image_size) -> Optional[Tuple[int, int]]:
    """Top-left corner for a new shape of ``coverage`` keeping each earlier shape >= 70 %
    visible, or None after 30 tries."""
    side = coverage.shape[0]
    for _ in range(30):
        x0, y0 = (int(v) for v in rng.integers(0, image_size - side + 1, 2))
        new = np.zeros((image_size, image_size), bool)
        new[y0:y0 + side, x0:x0 + side] = coverage > 0.5
        if all((vis & ~new).sum() >= _MIN_VISIBLE * full for vis, full in masks):
            return x0, y0
    return None


def _paint(img, coverage, x0, y0, rng) -> None:
    """Alpha-blend a shaded, coloured shape into ``img`` (in place), contrasting with what
    lies under it."""
    side = coverage.shape[0]
    patch = img[y0:y0 + side, x0:x0 + side]
    under = patch[coverage > 0.5].mean(axis=0)
    for _ in range(20):
        colour = _random_colour(rng, sat=(0.45, 1.0), val=(0.35, 1.0))
        if np.linalg.norm(colour - under) > _MIN_CONTRAST:
            break
    shade = np.linspace(1 - rng.uniform(0, 0.25), 1 + rng.uniform(0, 0.25), side, dtype=np.float32)
    fill = colour * (shade[None, :, None] if rng.random() < 0.5 else shade[:, None, None])
    alpha = coverage[..., None]
    if rng.random() < 0.3:  # darker outline on some shapes
        edge = coverage - cv2.erode(coverage, np.ones((3, 3), np.uint8))
        fill = fill * (1 - 0.5 * edge[..., None])
    patch[...] = patch * (1 - alpha) + fill * alpha


def render_image(
    rng: np.random.Generator, image_size: int = 256, *, empty: bool = False
) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image.

    Args:
        rng: the image's generator (all randomness comes from it).
        image_size: side of the square image in pixels.
        empty: draw the background only (a negative sample).

    Returns:
        (image uint8 [H, W, 3] BGR, objects): each object ``{"name", "box": [c1, r1, c2,
        r2] (0-based inclusive pixel indices of its visible pixels), "area": visible pixel
        count}``, in drawing order.
    """
    img = _background(rng, image_size)
    lo, hi = _MIN_SIDE * image_size / 256, min(_MAX_SIDE * image_size / 256, image_size - 6)
    n = 0 if empty else int(rng.integers(1, _MAX_OBJECTS + 1))
    placed = []  # (name, full mask on the image)
    for _ in range(n):
        name = SYNTHETIC_CLASSES[int(rng.integers(len(SYNTHETIC_CLASSES)))]
        coverage = _shape_mask(name, rng, int(round(np.exp(rng.uniform(np.log(lo), np.log(hi))))))
        visible = [(_visible(placed, i), m.sum()) for i, (_, m) in enumerate(placed)]
        spot = _place(rng, visible, coverage, image_size)
        if spot is None or not (coverage > 0.5).any():
            continue
        x0, y0 = spot
        _paint(img, coverage, x0, y0, rng)
        full = np.zeros((image_size, image_size), bool)
        full[y0:y0 + coverage.shape[0], x0:x0 + coverage.shape[1]] = coverage > 0.5
        placed.append((name, full))
    img += rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    objects = []
    for i, (name, _) in enumerate(placed):
        vis = _visible(placed, i)
        rows, cols = np.nonzero(vis.any(axis=1))[0], np.nonzero(vis.any(axis=0))[0]
        box = [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]
        objects.append({"name": name, "box": box, "area": int(vis.sum())})
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def _visible(placed, i: int) -> np.ndarray:
    """Pixels of shape ``i`` not covered by shapes drawn after it."""
    vis = placed[i][1].copy()
    for _, later in placed[i + 1:]:
        vis &= ~later
    return vis


# ------------------------------------------------------------------------------ writing
_XML = """<annotation>
\t<folder>JPEGImages</folder>
\t<filename>{filename}</filename>
\t<source><database>fewshot_det synthetic shapes v{version}</database></source>
\t<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
_XML_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>
\t</object>
"""


def _voc_xml(filename: str, size: int, objects: List[dict]) -> str:
    # VOC boxes are 1-based inclusive pixel indices.
    objs = "".join(
        _XML_OBJECT.format(name=o["name"], x1=o["box"][0] + 1, y1=o["box"][1] + 1,
                           x2=o["box"][2] + 1, y2=o["box"][3] + 1)
        for o in objects
    )
    return _XML.format(filename=filename, version=GENERATOR_VERSION, w=size, h=size, objects=objs)


def _coco_entries(image_id: int, filename: str, size: int, objects: List[dict], next_ann: int):
    image = {"id": image_id, "file_name": filename, "height": size, "width": size}
    anns = []
    for k, o in enumerate(objects):
        c1, r1, c2, r2 = o["box"]
        anns.append({
            "id": next_ann + k, "image_id": image_id,
            "category_id": SYNTHETIC_CLASSES.index(o["name"]) + 1,
            "bbox": [float(c1), float(r1), float(c2 - c1 + 1), float(r2 - r1 + 1)],
            "area": float(o["area"]), "iscrowd": 0,
        })
    return image, anns


def _write_split(root: str, split: str, num: int, image_size: int, seed: int) -> int:
    """Draw and write one split; returns its number of objects."""
    ids = [f"{split}_{i:06d}" for i in range(num)]
    images, annotations = [], []
    for i, (stem, objects) in enumerate(zip(ids, _draw_split(root, split, num, image_size,
                                                             seed))):
        image, anns = _coco_entries(i + 1, stem + ".jpg", image_size, objects,
                                    len(annotations) + 1)
        images.append(image)
        annotations.extend(anns)
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"}
                  for k, n in enumerate(SYNTHETIC_CLASSES)]
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    _write_lines(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), ids)
    if split == "train":
        _write_lines(os.path.join(root, "ImageSets", "Main", "trainval.txt"), ids)
    return len(annotations)


def _draw_split(root: str, split: str, num: int, image_size: int, seed: int) -> List[List[dict]]:
    """Every image's objects, in order; the images' second half is drawn by a helper process
    when the split is large and there is a second core (drawing is ~70 % of a fresh quick
    start's data time). Each image has its own generator, so the files are the same."""
    if num < _PARALLEL_FROM or (os.cpu_count() or 1) < 2 \
            or multiprocessing.current_process().daemon:  # a daemon may not have children
        return _draw_images(root, split, range(num), image_size, seed)
    half = num // 2
    # spawn, not fork: the parent may hold OpenCV / OpenMP thread pools a fork would break
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        second = pool.submit(_draw_images, root, split, range(half, num), image_size, seed)
        first = _draw_images(root, split, range(half), image_size, seed)
        return first + second.result()


def _draw_images(root: str, split: str, indices, image_size: int, seed: int) -> List[List[dict]]:
    """Draw images ``indices`` of a split and write their JPEG and VOC files."""
    drawn = []
    for i in indices:
        stem = f"{split}_{i:06d}"
        rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], i])
        img, objects = render_image(rng, image_size, empty=i % _EMPTY_EVERY == _EMPTY_EVERY - 1)
        path = os.path.join(root, "JPEGImages", stem + ".jpg")
        if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {path}")
        with open(os.path.join(root, "Annotations", stem + ".xml"), "w") as f:
            f.write(_voc_xml(stem + ".jpg", image_size, objects))
        drawn.append(objects)
    return drawn


def _write_lines(path: str, lines: List[str]) -> None:
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def _params(num_train: int = 2000, num_test: int = 200, image_size: int = 256,
            seed: int = 0) -> Dict[str, int]:
    params = {"num_train": int(num_train), "num_test": int(num_test),
              "image_size": int(image_size), "seed": int(seed)}
    if params["num_train"] < 0 or params["num_test"] < 0:
        raise ValueError(f"synthetic dataset: image counts must be >= 0, got {params}")
    if params["image_size"] < 64:
        raise ValueError(f"synthetic dataset: image_size must be >= 64, got {image_size}")
    return params


def generate_synthetic_dataset(root: str, **params) -> Dict[str, object]:
    """Write the dataset into ``root`` (created; existing files of the same name replaced).

    Args:
        root: output folder.
        **params: ``num_train`` (2000), ``num_test`` (200), ``image_size`` (256), ``seed`` (0).

    Returns:
        The manifest written last to ``root/manifest.json``: generator version, params,
        image and object counts per split. Until it exists the folder counts as unfinished
        (``ensure_synthetic_dataset`` regenerates it).
    """
    params = _params(**params)
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main"), "annotations"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    manifest_path = os.path.join(root, _MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    open(os.path.join(root, _IN_PROGRESS), "w").close()
    _write_lines(os.path.join(root, "classes.txt"), list(SYNTHETIC_CLASSES))
    novel = list(SYNTHETIC_NOVEL_CLASSES)
    with open(os.path.join(root, "fewshot_split.json"), "w") as f:
        json.dump({"thing_classes": list(SYNTHETIC_CLASSES), "novel_classes": novel,
                   "base_classes": [c for c in SYNTHETIC_CLASSES if c not in novel]}, f, indent=1)
    counts = {}
    for split in SPLITS:
        num = params[f"num_{split}"]
        counts[split] = {"images": num, "objects": _write_split(
            root, split, num, params["image_size"], params["seed"])}
    manifest = {"generator": "fewshot_det.data.synthetic", "version": GENERATOR_VERSION,
                "params": params, "counts": counts}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))  # never seen half-written
    os.remove(os.path.join(root, _IN_PROGRESS))
    return manifest


def _read_manifest(root: str) -> Optional[dict]:
    path = os.path.join(root, _MANIFEST)
    if not os.path.isfile(path) or os.path.exists(os.path.join(root, _IN_PROGRESS)):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if manifest.get("generator") == "fewshot_det.data.synthetic" else None


def _has_our_split_file(root: str) -> bool:
    """A folder this generator started (it writes fewshot_split.json first) even if its
    marker was lost."""
    try:
        with open(os.path.join(root, "fewshot_split.json")) as f:
            return json.load(f).get("thing_classes") == list(SYNTHETIC_CLASSES)
    except (OSError, ValueError, AttributeError):
        return False


def _is_current(manifest: Optional[dict], params: Dict[str, int]) -> bool:
    return bool(manifest) and manifest.get("version") == GENERATOR_VERSION \
        and manifest.get("params") == params


def ensure_synthetic_dataset(root: str, *, force: bool = False, **params) -> str:
    """Generate the dataset at ``root`` unless an identical one is already there.

    Generation happens in a temporary sibling folder that replaces ``root`` only when
    complete, so an interrupted run never leaves a half-written ``root``; a folder left
    unfinished by :func:`generate_synthetic_dataset` (no manifest) is regenerated, as is
    one generated with other parameters.

    Args:
        root: dataset folder.
        force: regenerate even if up to date.
        **params: see :func:`generate_synthetic_dataset`.

    Returns:
        The absolute ``root``.

    Raises:
        ValueError: ``root`` is a non-empty folder this generator did not write.
    """
    root = os.path.abspath(os.path.expanduser(root))
    params = _params(**params)
    manifest = _read_manifest(root)
    if _is_current(manifest, params) and not force:
        return root
    ours = manifest is not None or os.path.exists(os.path.join(root, _IN_PROGRESS)) \
        or _has_our_split_file(root)
    if os.path.isdir(root) and os.listdir(root) and not ours:
        raise ValueError(
            f"{root} is not empty and holds no synthetic-dataset manifest.json; refusing to "
            "overwrite it, choose an empty or new folder"
        )
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    try:
        generate_synthetic_dataset(tmp, **params)
        if _is_current(_read_manifest(root), params) and not force:
            return root  # another process finished first
        _replace_dir(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _replace_dir(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``, replacing a previous ``dst`` (moved aside, then deleted)."""
    old = None
    if os.path.exists(dst):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.old-", dir=os.path.dirname(dst))
        os.rmdir(old)
        os.rename(dst, old)
    os.rename(src, dst)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- catalog
def register_synthetic(
    root: Optional[str] = None, *, prefix: str = "shapes", **params
) -> List[str]:
    """Register the synthetic splits; the data is generated on first load.

    Names: ``{prefix}_train``, ``{prefix}_test``, ``{prefix}_trainval`` (VOC reader,
    VOC evaluation) and ``{prefix}_train_coco``, ``{prefix}_test_coco`` (COCO json, COCO
    evaluation). Metadata carries the declared base / novel classes. Names already
    registered are left alone.

    Args:
        root: dataset folder; default ``<dataset root>/shapes`` (``$FEWSHOT_DATASETS`` or
            ``./datasets``), resolved at load time.
        prefix: name prefix.
        **params: generator parameters (see :func:`generate_synthetic_dataset`).

    Returns:
        The names registered by this call.
    """
    _params(**params)  # fail now, not at first load
    names = []
    for split in ("train", "test", "trainval"):
        for coco in (False, True):
            name = f"{prefix}_{split}" + ("_coco" if coco else "")
            if (coco and split == "trainval") or name in DatasetCatalog:
                continue
            DatasetCatalog.register(name, _loader(root, split, coco, params))
            names.append(name)
    return names


def _loader(root: Optional[str], split: str, coco: bool, params: dict):
    def load(check_images: bool = True, box_policy: str = "clip"):
        where = ensure_synthetic_dataset(root or os.path.join(dataset_root(), "shapes"), **params)
        novel = list(SYNTHETIC_NOVEL_CLASSES)
        fields = {
            "thing_classes": list(SYNTHETIC_CLASSES), "novel_classes": novel,
            "base_classes": [c for c in SYNTHETIC_CLASSES if c not in novel],
            "thing_dataset_id_to_contiguous_id": {
                i: i for i in range(1, len(SYNTHETIC_CLASSES) + 1)},
            "evaluator_type": "coco" if coco else "voc", "dataset_root": where, "split": split,
        }
        if coco:
            records, coco_fields = load_coco_json(
                os.path.join(where, "annotations", f"instances_{split}.json"),
                os.path.join(where, "JPEGImages"), check_images=check_images, box_policy=box_policy)
            return records, {**fields, **coco_fields}
        records, _ = load_voc(where, split, SYNTHETIC_CLASSES, check_images=check_images,
                              box_policy=box_policy)
        return records, fields
    return load
