"""Evaluator speed: ours vs pycocotools vs faster-coco-eval, side by side, same data.

    python benchmarks/eval_speed.py                     # COCO-val-sized: 5000 images, 100 dets each
    python benchmarks/eval_speed.py --images 200        # quick look

A synthetic COCO-like set is written once to a temporary folder (sparse category ids, crowd
regions, ``area`` != w*h, scores rounded to 3 decimals so that ties are common), then each
evaluator runs in its own fresh subprocess, reading the same GT json and results json:

* ``ours``: ``fewshot_det.evaluation.evaluate_files`` (COCO + VOC protocols + P/R, everything
  ``tools/eval.py`` computes);
* ``pycocotools``: ``COCO`` + ``loadRes`` + ``COCOeval`` (evaluate, accumulate, summarize);
* ``faster-coco-eval``: the same with ``faster_coco_eval``'s ``COCO`` / ``COCOeval_faster``.

Time = wall clock from reading the files to the 12 summary numbers (interpreter start and
module imports excluded). Peak memory = the subprocess's ``ru_maxrss`` (includes the
interpreter and its imports). The 12 COCO numbers of each are compared with pycocotools'
(|delta| <= 1e-9 is required; the script exits 1 otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np

IMPLS = ("ours", "pycocotools", "faster-coco-eval")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl")


def make_coco_like(num_images: int = 5000, dets_per_image: int = 100, num_classes: int = 80,
                   gt_per_image: float = 7.3, seed: int = 0) -> Tuple[dict, List[dict]]:
    """A COCO-like GT dict and a results list with the statistics of a detector's output.

    Each image holds a few categories; every GT box gets a handful of jittered detections
    (mostly its own category) and the rest of the ``dets_per_image`` are random boxes.

    Returns:
        (gt: COCO instances dict, results: list of {image_id, category_id, bbox, score})
    """
    rng = np.random.default_rng(seed)
    cat_ids = np.sort(rng.choice(np.arange(1, num_classes + 11), num_classes, replace=False))
    categories = [{"id": int(c), "name": f"class_{int(c)}"} for c in cat_ids]
    images, annotations, results = [], [], []
    for img_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": width,
                       "height": height})
        present = rng.choice(cat_ids, int(rng.integers(1, 5)), replace=False)
        n_gt = int(rng.poisson(gt_per_image))
        gt_boxes = _random_boxes(rng, n_gt, width, height)
        gt_cats = rng.choice(present, n_gt)
        for box, cat in zip(gt_boxes, gt_cats):
            x, y, w, h = (round(float(v), 2) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": img_id, "category_id": int(cat),
                "bbox": [x, y, w, h], "area": round(w * h * float(rng.uniform(0.4, 1.0)), 2),
                "iscrowd": int(rng.random() < 0.01)})
        n_jit = min(dets_per_image, int(rng.integers(2, 7)) * n_gt)
        src = rng.integers(0, max(n_gt, 1), n_jit)
        det_boxes = _random_boxes(rng, dets_per_image, width, height)
        det_cats = rng.choice(np.concatenate([present, cat_ids]), dets_per_image)
        if n_gt:
            jitter = rng.normal(0.0, 0.08, (n_jit, 4)) * gt_boxes[src][:, [2, 3, 2, 3]]
            det_boxes[:n_jit] = gt_boxes[src] + jitter
            det_boxes[:n_jit, 2:] = np.maximum(det_boxes[:n_jit, 2:], 1.0)
            keep_cat = rng.random(n_jit) < 0.85
            det_cats[:n_jit] = np.where(keep_cat, gt_cats[src], det_cats[:n_jit])
        scores = np.round(rng.beta(1.2, 2.5, dets_per_image), 3)
        for box, cat, score in zip(det_boxes, det_cats, scores):
            results.append({"image_id": img_id, "category_id": int(cat),
                            "bbox": [round(float(v), 2) for v in box], "score": float(score)})
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _random_boxes(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """n XYWH boxes inside the image with a COCO-like spread of small/medium/large areas."""
    side = np.exp(rng.uniform(np.log(6), np.log(min(width, height) * 0.9), (n, 1)))
    aspect = np.exp(rng.normal(0.0, 0.5, (n, 1)))
    wh = np.concatenate([side * np.sqrt(aspect), side / np.sqrt(aspect)], axis=1)
    wh = np.minimum(wh, [width - 1, height - 1])
    xy = rng.uniform(0, 1, (n, 2)) * ([width, height] - wh)
    return np.concatenate([xy, wh], axis=1)


# ---------------------------------------------------------------------------------------
# Workers: one per implementation, each run in a fresh subprocess.


def _run_ours(gt_file: str, res_file: str) -> List[float]:
    from fewshot_det.evaluation import evaluate_files

    metrics = evaluate_files(gt_file, res_file)
    return [metrics[k] for k in STAT_NAMES]


def _run_cocoapi(gt_file: str, res_file: str, faster: bool) -> List[float]:
    import contextlib
    import io

    if faster:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        dt = gt.loadRes(res_file)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:12]]


def worker(impl: str, gt_file: str, res_file: str) -> Dict[str, object]:
    """Evaluate once, return {time_s, maxrss_mb, stats}."""
    # Import outside the timed region, so that only the evaluation is timed.
    if impl == "ours":
        import fewshot_det.evaluation  # noqa: F401
    elif impl == "pycocotools":
        import pycocotools.cocoeval  # noqa: F401
    else:
        import faster_coco_eval  # noqa: F401
    start = time.perf_counter()
    if impl == "ours":
        stats = _run_ours(gt_file, res_file)
    else:
        stats = _run_cocoapi(gt_file, res_file, faster=impl == "faster-coco-eval")
    elapsed = time.perf_counter() - start
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"time_s": elapsed, "maxrss_mb": maxrss_mb, "stats": stats,
            "torch_imported": "torch" in sys.modules}


def run_in_subprocess(impl: str, gt_file: str, res_file: str) -> Dict[str, object]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--gt", gt_file,
           "--results", res_file]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------


def format_report(runs: Dict[str, Dict[str, object]], sizes: Dict[str, int]) -> str:
    """A markdown table of time, peak memory and ratios, plus the max |delta| of the stats."""
    base = runs.get("pycocotools")
    lines = [f"Synthetic COCO-like set: {sizes['images']} images, {sizes['gt']} GT boxes "
             f"({sizes['crowd']} crowd), {sizes['dets']} detections, {sizes['classes']} "
             f"classes; machine: {os.cpu_count()} CPU cores.", "",
             "| evaluator | time (s) | peak RSS (MB) | speed-up vs pycocotools | max abs delta "
             "vs pycocotools (12 stats) |", "|---|---|---|---|---|"]
    for impl, run in runs.items():
        speed = f"{base['time_s'] / run['time_s']:.1f}x" if base else "-"
        delta = (f"{max(abs(a - b) for a, b in zip(run['stats'], base['stats'])):.1e}"
                 if base else "-")
        lines.append(f"| {impl} | {run['time_s']:.2f} | {run['maxrss_mb']:.0f} | {speed} | "
                     f"{delta} |")
    if "ours" in runs and "faster-coco-eval" in runs:
        ratio = runs["faster-coco-eval"]["time_s"] / runs["ours"]["time_s"]
        lines += ["", f"ours vs faster-coco-eval: {ratio:.2f}x the speed "
                  f"(time ratio faster-coco-eval / ours)."]
    return "\n".join(lines)


def _generate_and_run(args, impls, workdir):
    """Write the synthetic set into ``workdir`` and run each evaluator on it."""
    gt, results = make_coco_like(args.images, args.dets_per_image, args.classes, seed=args.seed)
    gt_file, res_file = os.path.join(workdir, "gt.json"), os.path.join(workdir, "results.json")
    with open(gt_file, "w") as f:
        json.dump(gt, f)
    with open(res_file, "w") as f:
        json.dump(results, f)
    sizes = {"images": len(gt["images"]), "gt": len(gt["annotations"]),
             "crowd": sum(a["iscrowd"] for a in gt["annotations"]), "dets": len(results),
             "classes": len(gt["categories"])}
    del gt, results
    runs = {}
    for impl in impls:
        runs[impl] = run_in_subprocess(impl, gt_file, res_file)
        print(f"{impl}: {runs[impl]['time_s']:.2f} s, {runs[impl]['maxrss_mb']:.0f} MB",
              file=sys.stderr)
    return runs, sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help=f"comma-separated subset of {IMPLS}")
    parser.add_argument("--workdir", default=None, help="keep the generated files here")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--gt", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.gt, args.results)))
        return 0

    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        parser.error(f"unknown --impls {unknown}; choose from {IMPLS}")
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        runs, sizes = _generate_and_run(args, impls, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="eval_speed_") as workdir:
            runs, sizes = _generate_and_run(args, impls, workdir)
    print(format_report(runs, sizes))
    ok = True
    if "pycocotools" in runs:
        for impl, run in runs.items():
            delta = max(abs(a - b) for a, b in zip(run["stats"], runs["pycocotools"]["stats"]))
            if delta > 1e-9:
                print(f"MISMATCH: {impl} differs from pycocotools by {delta:.3e}: "
                      f"{run['stats']} vs {runs['pycocotools']['stats']}", file=sys.stderr)
                ok = False
    if runs.get("ours", {}).get("torch_imported"):
        print("ERROR: our evaluator imported torch", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
