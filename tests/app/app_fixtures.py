"""Models, photos, a fake predictor and a tiny review set for the web app's tests."""
import hashlib
import os
import time
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import torch

import fewshot_det
from fewshot_det.app.images import ImageStore
from fewshot_det.app.session import ModelSession
from fewshot_det.app.state import AppState
from fewshot_fixtures import tiny_cfg
from fewshot_det.modeling import build_model
from tiny_datasets import make_voc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(REPO, "..", "shared", "data")
COSINE = ["MODEL.ROI_BOX_HEAD.PREDICTOR", "CosineSimOutputLayers"]


def photo(path, width=128, height=96, seed=0):
    """A JPEG of noise with a bright rectangle; returns its path."""
    img = np.random.default_rng(seed).integers(0, 120, (height, width, 3), dtype=np.uint8)
    cv2.rectangle(img, (width // 4, height // 4), (width // 2, height // 2), (40, 220, 240), -1)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    cv2.imwrite(str(path), img)
    return str(path)


def checkpoint(tmp_path, *opts, kind="siamese", classes=("a", "b", "c")):
    """A tiny model of ``kind`` ("siamese", "cosine", "linear") saved with class names;
    returns its config (MODEL.WEIGHTS set)."""
    extra = COSINE if kind == "cosine" else []
    cfg = tiny_cfg(*extra, num_classes=len(classes), siamese=kind == "siamese")
    torch.manual_seed(0)
    path = str(tmp_path / f"{kind}.pth")
    torch.save({"model": build_model(cfg).state_dict(),
                "extra": {"thing_classes": list(classes)}}, path)
    return tiny_cfg(*extra, "MODEL.WEIGHTS", path, "INPUT.MIN_SIZE_TEST", "96",
                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *opts,
                    num_classes=len(classes), siamese=kind == "siamese")


def make_state(tmp_path, cfg=None, predictor=None, **kw):
    """An ``AppState`` on a real ``Predictor`` of ``cfg``, or on ``predictor``."""
    predictor = predictor or fewshot_det.Predictor(cfg)
    session = ModelSession(cfg if cfg is not None else fewshot_det.get_cfg(), predictor)
    kw.setdefault("supports_path", str(tmp_path / "supports" / "supports.json"))
    return AppState(session, ImageStore(str(tmp_path / "work" / "uploads")), **kw)


def wait_job(client, job, timeout=60.0):
    """Poll ``/api/jobs/{id}`` until the job ends; returns its final JSON."""
    end = time.time() + timeout
    while job["status"] in ("queued", "running"):
        assert time.time() < end, f"job {job} did not finish in {timeout} s"
        time.sleep(0.02)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def upload(client, *paths):
    files = [("files", (os.path.basename(p), open(p, "rb").read(), "image/jpeg")) for p in paths]
    return client.post("/api/images", files=files)


def image_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class FakePredictor:
    """Detections chosen by the test: {image key: [(name, [x1, y1, x2, y2], score)]}."""

    def __init__(self, class_names, detections, delay=0.0, fail=False):
        self.class_names = list(class_names)
        self.detections = detections
        self.delay, self.fail = delay, fail

    def __call__(self, image):
        if self.fail:
            raise RuntimeError("the model broke")
        time.sleep(self.delay)
        dets = self.detections.get(image_key(image), [])
        return {"boxes": np.array([d[1] for d in dets], np.float32).reshape(-1, 4),
                "scores": np.array([d[2] for d in dets], np.float32),
                "labels": np.array([self.class_names.index(d[0]) + 1 for d in dets]),
                "class_names": [d[0] for d in dets]}


BCCD_STEMS = ("BloodImage_00000", "BloodImage_00001", "BloodImage_00002", "BloodImage_00003")


def review_set(root):
    """A tiny VOC test split with a fake model whose errors are known.

    Four 640 x 480 images (BCCD photos and their boxes when ../shared/data has them, else
    noise with made-up boxes) of classes RBC, WBC, Platelets. The fake model finds every GT
    box except: the first RBC of image 1 is missed (FN), image 2 gets a spurious WBC
    (FP), and the first Platelets box of image 3 is shifted off its object (FP + FN);
    a low-scoring (0.3) duplicate of image 0's first RBC is a FP only below 0.5.

    Returns:
        (spec, FakePredictor, expected {class: (tp, fp, fn)} at score 0.5).
    """
    classes = ["RBC", "WBC", "Platelets"]
    bccd = os.path.join(SHARED, "BCCD")
    images = {}
    for i, stem in enumerate(BCCD_STEMS):
        xml = os.path.join(bccd, "Annotations", stem + ".xml")
        if os.path.isfile(xml):
            objects = [(o.findtext("name"), [int(float(o.find("bndbox").findtext(k)))
                                             for k in ("xmin", "ymin", "xmax", "ymax")], 0)
                       for o in ET.parse(xml).getroot().iter("object")]
        else:
            objects = [("RBC", [20 + 90 * j, 40, 80 + 90 * j, 100], 0) for j in range(3)] + \
                      [("WBC", [200, 200, 320, 330], 0), ("Platelets", [400, 300, 430, 330], 0)]
        images[f"img{i}"] = (640, 480, [o for o in objects if o[0] in classes])
    make_voc(str(root), images, split="test", classes=classes)
    for i, stem in enumerate(BCCD_STEMS):
        src = os.path.join(bccd, "JPEGImages", stem + ".jpg")
        if os.path.isfile(src):
            img = cv2.imread(src)
            if img.shape[:2] == (480, 640):
                cv2.imwrite(os.path.join(str(root), "JPEGImages", f"img{i}.jpg"), img)
    detections, expected = {}, {c: [0, 0, 0] for c in classes}
    for i, (stem, (_, _, objects)) in enumerate(images.items()):
        dets = []
        for j, (name, box, _) in enumerate(objects):
            first_of_class = all(o[0] != name for o in objects[:j])
            if i == 1 and name == "RBC" and first_of_class:
                expected[name][2] += 1  # missed
                continue
            if i == 3 and name == "Platelets" and first_of_class:
                dets.append((name, [box[0] + 200, box[1], box[2] + 200, box[3]], 0.8))
                expected[name][1] += 1
                expected[name][2] += 1
                continue
            dets.append((name, [float(v) for v in box], 0.9 - 0.01 * j))
            expected[name][0] += 1
            if i == 0 and name == "RBC" and first_of_class:
                dets.append((name, [box[0] + 3.0, box[1], box[2] + 3.0, box[3]], 0.3))
        if i == 2:
            dets.append(("WBC", [5.0, 5.0, 60.0, 60.0], 0.7))
            expected["WBC"][1] += 1
        img = cv2.imread(os.path.join(str(root), "JPEGImages", f"{stem}.jpg"))
        detections[image_key(img)] = dets
    fake = FakePredictor(classes, detections)
    return f"voc:{root}:test", fake, {c: tuple(v) for c, v in expected.items()}
