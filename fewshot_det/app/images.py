"""The photos the app knows: uploads (checked before they are kept), dataset images and
images of folders under the allowed roots, each under a short id the page uses.

Nothing here runs the model. An upload is refused with a message naming the file when it
is not an image, is cut short, cannot be decoded, or is larger than the app takes
(``MAX_SIDE`` / ``MAX_PIXELS``: a 20,000-px photo would take minutes and gigabytes on the
CPU this app targets; sliced inference covers large photos below that).
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..data.image_format import sniff_format, truncation_problem
from ..data.records import IMAGE_EXTENSIONS

MAX_SIDE = 16384  # px, either side of an uploaded photo
MAX_PIXELS = 120_000_000  # a 12,000 x 9,000 photo fits (slicing's largest example)
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
DECODABLE = ("jpeg", "png", "bmp", "tiff", "webp")  # what OpenCV reads; not GIF


class UploadError(ValueError):
    """An uploaded file the app does not keep; the message names the file."""


@dataclass(frozen=True)
class StoredImage:
    """A photo the page can show and the model can read.

    Attributes:
        id: the page's handle (``/api/images/{id}``).
        path: the file on disk.
        name: what the page shows (the uploaded file name, or the path under its root).
        width, height: pixels of the stored grid.
        image_id: the id written in results files (a dataset record's ``image_id``,
            else the file stem, made unique among uploads).
    """

    id: str
    path: str
    name: str
    width: int
    height: int
    image_id: object

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "width": self.width, "height": self.height,
                "url": f"/api/images/{self.id}", "image_id": self.image_id}


def _safe_name(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")) or "upload"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[-80:]


def header_size(path: str) -> Optional[tuple]:
    """(width, height) from the file header, or None when Pillow cannot tell."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError:
        return (MAX_SIDE + 1, MAX_SIDE + 1)  # Pillow refuses > ~179 MP: too large for us
    except Exception:
        return None


def check_image_file(path: str, name: str) -> tuple:
    """(width, height) of a photo the app can use, else ``UploadError`` saying why.

    Checks, cheapest first: the content is an image format OpenCV decodes, the file is
    not cut short, the size (from the header, before any decoding) is within
    ``MAX_SIDE`` / ``MAX_PIXELS``, and the pixels decode.
    """
    size_bytes = os.path.getsize(path)
    if size_bytes == 0:
        raise UploadError(f"{name}: the file is empty")
    with open(path, "rb") as f:
        fmt = sniff_format(f.read(16))
    if fmt not in DECODABLE:
        what = f"a {fmt.upper()} file" if fmt else "not an image"
        raise UploadError(f"{name}: {what}; give a JPEG, PNG, BMP, TIFF or WebP photo")
    problem = truncation_problem(path)
    if problem:
        raise UploadError(f"{name}: the file is cut short or corrupt ({problem}); upload it "
                          f"again or re-save it")
    size = header_size(path)
    if size and (max(size) > MAX_SIDE or size[0] * size[1] > MAX_PIXELS):
        raise UploadError(f"{name}: {size[0]} x {size[1]} px is larger than this app takes "
                          f"(at most {MAX_SIDE} px a side and {MAX_PIXELS // 10**6} MP); "
                          f"cut the photo into parts")
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise UploadError(f"{name}: the image cannot be decoded (corrupt, or an unsupported "
                          f"variant of {fmt.upper()})")
    return int(image.shape[1]), int(image.shape[0])


def read_bgr(path: str) -> np.ndarray:
    """H x W x 3 uint8 BGR pixels of an image file (stored grid, orientation ignored).

    Raises:
        ValueError: naming the file, when it is cut short or cannot be decoded.
    """
    problem = truncation_problem(path)
    if problem:
        raise ValueError(f"{path}: the file is cut short or corrupt ({problem})")
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f"{path}: cannot read this image (missing, corrupt or not an image)")
    return image


class ImageStore:
    """Every photo the page may show, by id; thread-safe.

    Args:
        upload_dir: where uploads are kept (created).
    """

    def __init__(self, upload_dir: str):
        self.upload_dir = os.path.abspath(upload_dir)
        os.makedirs(self.upload_dir, exist_ok=True)
        self._images: Dict[str, StoredImage] = {}
        self._by_path: Dict[str, str] = {}
        self._result_ids: set = set()
        self._lock = threading.Lock()

    def add_upload(self, filename: str, data: bytes) -> StoredImage:
        """Keep an uploaded photo, or raise ``UploadError`` (the file is not kept)."""
        name = _safe_name(filename or "upload")
        if len(data) > MAX_UPLOAD_BYTES:
            raise UploadError(f"{name}: {len(data) // 2**20} MB is more than the "
                              f"{MAX_UPLOAD_BYTES // 2**20} MB an upload may have")
        path = os.path.join(self.upload_dir, f"{uuid.uuid4().hex[:8]}_{name}")
        with open(path, "wb") as f:
            f.write(data)
        try:
            width, height = check_image_file(path, filename or name)
        except UploadError:
            os.remove(path)
            raise
        stem = os.path.splitext(name)[0] or "upload"
        return self._add(path, filename or name, width, height, self._unique_result_id(stem))

    def add_file(self, path: str, name: Optional[str] = None, image_id: object = None,
                 size: Optional[Sequence[int]] = None) -> StoredImage:
        """Register a file already on disk (a dataset or folder image); the same path
        always gets the same id. ``size`` (width, height) spares reading the header."""
        path = os.path.abspath(path)
        with self._lock:
            known = self._by_path.get(path)
            if known:
                return self._images[known]
        if size is None:
            size = header_size(path)
            if size is None:
                raise ValueError(f"{path}: not a readable image")
        stem = os.path.splitext(os.path.basename(path))[0]
        return self._add(path, name or os.path.basename(path), int(size[0]), int(size[1]),
                         stem if image_id is None else image_id)

    def _unique_result_id(self, stem: str) -> str:
        with self._lock:
            candidate, i = stem, 2
            while candidate in self._result_ids:
                candidate, i = f"{stem}_{i}", i + 1
            self._result_ids.add(candidate)
            return candidate

    def _add(self, path: str, name: str, width: int, height: int, image_id) -> StoredImage:
        key = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        image = StoredImage(id=key, path=path, name=name, width=width, height=height,
                            image_id=image_id)
        with self._lock:
            self._images[key] = image
            self._by_path[path] = key
            self._result_ids.add(image_id)
        return image

    def get(self, image_id: str) -> StoredImage:
        """Raises ``KeyError`` naming the id."""
        with self._lock:
            if image_id not in self._images:
                raise KeyError(f"no photo with id {image_id!r} (upload it again)")
            return self._images[image_id]

    def uploads(self) -> List[StoredImage]:
        """The uploaded photos, oldest first."""
        with self._lock:
            return [im for im in self._images.values()
                    if os.path.dirname(im.path) == self.upload_dir]

    def is_upload(self, path: str) -> bool:
        return os.path.dirname(os.path.abspath(path)) == self.upload_dir


# ------------------------------------------------------------------------- folders
def resolve_under_roots(path: str, roots: Sequence[str]) -> str:
    """``path`` (relative paths: to the first root) as a real path inside one of
    ``roots``, else ``ValueError``: the app reads no folder it was not given."""
    if not roots:
        raise ValueError("this app was started without --data or --root: no folder may be "
                         "read; start it with --root DIR to detect on a folder")
    path = os.path.expanduser(path.strip())
    if not path:
        raise ValueError("give a folder to detect on")
    if not os.path.isabs(path):
        path = os.path.join(roots[0], path)
    real = os.path.realpath(path)
    for root in roots:
        root = os.path.realpath(root)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    raise ValueError(f"{path} is outside the folders this app may read "
                     f"({', '.join(roots)}; set with --data / --root)")


def folder_images(folder: str) -> List[str]:
    """The image files directly in ``folder``, sorted; ``ValueError`` when there is none."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such folder")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, f)))
    if not files:
        raise ValueError(f"{folder}: no image ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files
