"""What the app does, apart from HTTP: the operations the routes call.

``AppState`` holds the model session, the photos, the job runner, the datasets given with
``--data`` and the folders the app may read. Each operation that needs the model returns
a ``Job`` (run by the one model worker); the others answer at once.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import threading
from typing import Dict, List, Optional, Sequence

from ..data.support_file import (SupportExample, check_box, read_support_file,
                                 write_support_file)
from .images import ImageStore, folder_images, read_bgr, resolve_under_roots
from .jobs import Job, JobRunner
from .review import ReviewRun, run_review
from .session import ModelSession

logger = logging.getLogger(__name__)

MIN_BOX_SIDE = 2.0  # px: a smaller drag is a click, not an example


class AppState:
    """Args:
        session: the model and its taught classes.
        store: the photos.
        datasets: dataset specs (``voc:PATH:SPLIT``, ...) for picking photos and review.
        roots: more folders whose images may be detected (the datasets' folders are
            allowed too).
        supports_path: the support file "save" writes and "load" reads.
    """

    def __init__(self, session: ModelSession, store: ImageStore, *,
                 datasets: Sequence[str] = (), roots: Sequence[str] = (),
                 supports_path: str = "supports.json"):
        from ..data import is_spec, spec_paths

        self.session, self.store, self.jobs = session, store, JobRunner()
        self.datasets = list(datasets)
        self.supports_path = os.path.abspath(supports_path)
        allowed = [os.path.abspath(r) for r in roots]
        for spec in filter(is_spec, self.datasets):  # a registered name has no path here
            allowed += [os.path.abspath(p if os.path.isdir(p) else os.path.dirname(p))
                        for p in spec_paths(spec)]
        self.roots = list(dict.fromkeys(allowed))
        self._dataset_cache: Dict[int, tuple] = {}
        self._dataset_lock = threading.Lock()

    def describe(self) -> dict:
        return dict(self.session.describe(), datasets=self.datasets, roots=self.roots,
                    supports_path=self.supports_path,
                    supports_exists=os.path.isfile(self.supports_path),
                    uploads=[im.to_json() for im in self.store.uploads()])

    # ------------------------------------------------------------------ datasets
    def dataset(self, index: int, check_images: bool = False):
        """(records, metadata) of ``--data`` number ``index`` (read once)."""
        from ..data import get_dataset

        if not 0 <= index < len(self.datasets):
            raise KeyError(f"no dataset number {index} (the app was given "
                           f"{len(self.datasets)} with --data)")
        with self._dataset_lock:
            if index not in self._dataset_cache:
                self._dataset_cache[index] = get_dataset(self.datasets[index],
                                                         check_images=check_images)
            return self._dataset_cache[index]

    def dataset_images(self, index: int, offset: int = 0, limit: int = 60) -> dict:
        records, _ = self.dataset(index)
        page = records[max(0, offset):max(0, offset) + max(1, min(limit, 500))]
        images = [self.store.add_file(r["file_name"], image_id=r["image_id"],
                                      size=(r["width"], r["height"])).to_json() for r in page]
        return {"total": len(records), "offset": offset, "images": images}

    # ------------------------------------------------------------------ teaching
    def example(self, image: str, box: Sequence) -> SupportExample:
        """A drawn box on a known photo as an example: clipped to the photo, and refused
        when it is not 4 numbers or is (almost) empty."""
        stored = self.store.get(image)
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in box)):
            raise ValueError(f"a box is 4 finite numbers [x1, y1, x2, y2], got {box!r}: "
                             f"drag a rectangle on the photo")
        x1, y1, x2, y2 = (float(v) for v in box)
        x1, x2 = sorted((min(max(x1, 0.0), stored.width), min(max(x2, 0.0), stored.width)))
        y1, y2 = sorted((min(max(y1, 0.0), stored.height), min(max(y2, 0.0), stored.height)))
        if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
            raise ValueError(f"the box is {x2 - x1:.0f} x {y2 - y1:.0f} px inside the photo, "
                             f"too small for an example: drag a rectangle around the object")
        box = check_box((x1, y1, x2, y2), (stored.width, stored.height), "the box")
        return SupportExample(image=stored.path, box=box)

    def teach(self, name: str, image: str, box: Sequence, *, new: bool = True,
              search: Optional[str] = None, sliced: Optional[bool] = None) -> Job:
        """Add a class (``new``) or an example to a taught class, then detect on the
        photo being searched (``search``) with it. Checks that need no model run now."""
        if self.session.mode is None:
            raise ValueError(self.session.describe()["teach_message"])
        example = self.example(image, box)
        if new:
            name = self.session.check_new_name(name)
        elif name not in self.session.taught:
            raise KeyError(f"no taught class {name!r} to add an example to")
        searched = self.store.get(search) if search else None

        def work(job: Job) -> dict:
            examples = ([] if new else list(self.session.taught[name])) + [example]
            self.session.teach({name: examples})
            return {"class": name, "examples": len(examples), "state": self.describe(),
                    "detections": self._detect_one(searched, sliced) if searched else None}

        return self.jobs.submit("teach", work)

    def forget(self, name: str) -> Job:
        if name not in self.session.taught:
            raise KeyError(f"no taught class {name!r}")

        def work(job: Job) -> dict:
            self.session.forget(name)
            return {"state": self.describe()}

        return self.jobs.submit("forget", work)

    def save_supports(self) -> dict:
        """Write the taught classes to the support file; uploaded photos are copied next
        to it (``<file stem>_images/``) so the file stays valid after the app stops."""
        taught = dict(self.session.taught)
        if not taught:
            raise ValueError("no class taught yet: nothing to save")
        folder = os.path.dirname(self.supports_path)
        copies = os.path.join(folder, os.path.splitext(os.path.basename(
            self.supports_path))[0] + "_images")
        out: Dict[str, List[SupportExample]] = {}
        for name, examples in taught.items():
            out[name] = [SupportExample(image=self._keep(ex.image, copies), box=ex.box)
                         for ex in examples]
        os.makedirs(folder, exist_ok=True)
        write_support_file(self.supports_path, out)
        return {"path": self.supports_path, "classes": {n: len(e) for n, e in out.items()}}

    def _keep(self, image: str, copies: str) -> str:
        if not self.store.is_upload(image):
            return image
        os.makedirs(copies, exist_ok=True)
        target = os.path.join(copies, os.path.basename(image))
        if not os.path.exists(target):
            shutil.copyfile(image, target)
        return target

    def read_supports(self) -> Dict[str, List[SupportExample]]:
        """The support file's classes, checked against the model's trained names; their
        photos are registered so the page can show them."""
        classes = read_support_file(self.supports_path)
        taken = [n for n in classes if n in self.session.trained]
        if taken:
            raise ValueError(f"{self.supports_path}: classes {taken} are names of the "
                             f"model's trained classes; rename them in the file")
        for examples in classes.values():
            for ex in examples:
                self.store.add_file(ex.image)
        return classes

    def load_supports(self, search: Optional[str] = None, sliced: Optional[bool] = None
                      ) -> Job:
        """Replace the taught classes with the support file's."""
        classes = self.read_supports()
        searched = self.store.get(search) if search else None

        def work(job: Job) -> dict:
            self.session.teach(classes, replace_all=True)
            return {"state": self.describe(),
                    "detections": self._detect_one(searched, sliced) if searched else None}

        return self.jobs.submit("load", work)

    # ------------------------------------------------------------------ detecting
    def _detect_one(self, stored, sliced) -> dict:
        return dict(image=stored.to_json(),
                    **self.session.detect(read_bgr(stored.path), sliced=sliced))

    def detect(self, images: Sequence[str], sliced: Optional[bool] = None) -> Job:
        """Detect on known photos (uploads or dataset photos)."""
        if not images:
            raise ValueError("choose or upload a photo first")
        return self._detect_files([self.store.get(i) for i in images], sliced)

    def detect_folder(self, path: str, sliced: Optional[bool] = None) -> Job:
        """Detect on every image of a folder under the allowed roots."""
        folder = resolve_under_roots(path, self.roots)
        files = folder_images(folder)
        ids = self._image_ids_of_datasets()
        return self._detect_files([self.store.add_file(f, name=os.path.relpath(f, folder),
                                                       image_id=ids.get(os.path.abspath(f)))
                                   for f in files], sliced)

    def _image_ids_of_datasets(self) -> dict:
        """{image file: record image_id} of the datasets already read (results of a
        dataset's folder then carry the ids its ground truth uses)."""
        with self._dataset_lock:
            return {os.path.abspath(r["file_name"]): r["image_id"]
                    for records, _ in self._dataset_cache.values() for r in records}

    def _detect_files(self, stored: List, sliced: Optional[bool]) -> Job:
        def work(job: Job) -> dict:
            out, skipped = [], []
            for i, image in enumerate(stored):
                job.check_cancelled()
                try:
                    out.append(self._detect_one(image, sliced))
                except ValueError as e:  # a cut or unreadable file of a folder
                    skipped.append({"name": image.name, "error": str(e)})
                job.progress(i + 1)
            job.data = out
            return {"images": out, "skipped": skipped}

        return self.jobs.submit("detect", work, total=len(stored))

    # ------------------------------------------------------------------ review
    def review(self, index: int, limit: int = 0, sliced: Optional[bool] = None) -> Job:
        """Detect a ``--data`` split (its first ``limit`` images; 0: all) for review."""
        spec = self.datasets[index] if 0 <= index < len(self.datasets) else None
        if spec is None:
            raise KeyError(f"no dataset number {index}")

        def work(job: Job) -> dict:
            records, metadata = self.dataset(index)
            chosen = records[:limit] if limit and limit > 0 else records
            if not chosen:
                raise ValueError(f"{spec}: the split has no image")
            job.data = run_review(self.session, self.store, spec, chosen, metadata, job,
                                  sliced=sliced)
            return {"review": job.id, "num_images": len(chosen)}

        return self.jobs.submit("review", work)

    def review_run(self, job_id: str) -> ReviewRun:
        job = self.jobs.get(job_id)
        if job.kind != "review" or job.status != "done":
            raise KeyError(f"no finished review {job_id!r}")
        return job.data


def results_json(detections: List[dict], score_thresh: float = 0.0) -> List[dict]:
    """A detection run as a COCO results list (``category_name``; boxes ``[x, y, w, h]``),
    the detections scoring at least ``score_thresh``."""
    out = []
    for image in detections:
        for box, score, name in zip(image["boxes"], image["scores"], image["names"]):
            if score >= score_thresh:
                x1, y1, x2, y2 = box
                out.append({"image_id": image["image"]["image_id"], "category_name": name,
                            "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                            "score": score})
    return out
