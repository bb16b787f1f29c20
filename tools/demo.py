#!/usr/bin/env python
"""Draw a model's detections on images.

    python tools/demo.py --config CFG --weights output/model_final.pth \
        --input photo.jpg|folder/ --output vis/ [--score-thresh 0.5] [--overwrite] \
        [KEY VALUE ...]

Each drawing is saved under --output with its image's file name. Checked before the model
is loaded: a drawing never replaces an input image (--output may not be the input's
folder), and an existing file in --output is replaced only with --overwrite. A truncated
or unreadable image of a folder is skipped, and the skipped images are counted and named
at the end; a single --input image that cannot be read is an error.
"""
import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tools/train_net.py

import cv2

from fewshot_det.engine.defaults import add_debug_argument, run_tool

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(path):
    """The image files of --input (a file, or the images of a folder)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"--input {path}: no image ({', '.join(IMAGE_EXTENSIONS)}) "
                                    f"in this folder")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input {path}: no such file or folder")
    return [path]


def drawing_paths(images, output, overwrite):
    """Where the drawing of each image goes (``output``/its file name).

    Raises:
        ValueError: ``output`` is a file; a drawing would replace an input image; or,
            without ``overwrite``, a drawing would replace an existing file (the first is
            named).
    """
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"--output {output} is a file; give a folder for the drawn images")
    targets = [os.path.join(output, os.path.basename(p)) for p in images]
    inputs = {os.path.realpath(p) for p in images}
    for image, target in zip(images, targets):
        if os.path.realpath(target) in inputs or (
                os.path.exists(target) and os.path.samefile(image, target)):
            raise ValueError(f"--output {output}: the drawing of {image} would replace an "
                             f"input image; choose an --output folder other than the "
                             f"input's")
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not overwrite:
        raise ValueError(f"--output {output} already holds {existing[0]} ({len(existing)} of "
                         f"{len(targets)} drawings would replace existing files): give "
                         f"--overwrite to replace them, or choose another folder")
    return targets


def read_image(path):
    """(BGR uint8 image, "") or (None, why it cannot be used): truncated files are refused
    before decoding (OpenCV would only warn and return a partly grey image)."""
    from fewshot_det.data.image_format import truncation_problem

    problem = truncation_problem(path)
    if problem:
        return None, f"truncated or corrupt ({problem})"
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return (image, "") if image is not None else (None, "not an image, or corrupt")


def draw(image_bgr, out, score_thresh):
    """Boxes, class names and scores on a copy of the BGR image; labels never cover each
    other (``fewshot_det.utils.draw``)."""
    from fewshot_det.utils.draw import class_color, draw_boxes

    names = out["class_names"] or [str(int(label)) for label in out["labels"]]
    keep = [i for i, s in enumerate(out["scores"].tolist()) if s >= score_thresh]
    boxes = out["boxes"].tolist()
    scores = out["scores"].tolist()
    return draw_boxes(image_bgr, [boxes[i] for i in keep],
                      [f"{names[i]} {scores[i]:.2f}" for i in keep],
                      [class_color(names[i]) for i in keep])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--weights", required=True, metavar="CKPT")
    p.add_argument("--input", required=True, help="an image or a folder of images")
    p.add_argument("--output", required=True, help="folder for the drawn images")
    p.add_argument("--score-thresh", type=float, default=0.5)
    p.add_argument("--supports", metavar="FILE",
                   help="a support file (JSON, as the app saves it): classes given by example "
                        "boxes, as prototypes (siamese) or imprinted rows (cosine classifier)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files in --output (never an input image)")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = p.parse_args(argv)
    return run_tool(run, args, debug=args.debug)


def run(args) -> None:
    """Detections drawn on every image of ``args.input``."""
    from fewshot_det.engine.defaults import load_config, setup_logging
    from fewshot_det.engine.predictor import Predictor
    from fewshot_det.utils.files import check_output_folder

    setup_logging(None)
    cfg = load_config(args.config, args.opts + ["MODEL.WEIGHTS", args.weights])
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights {args.weights}: no such file")
    images = list_images(args.input)
    targets = drawing_paths(images, args.output, args.overwrite)
    check_output_folder(args.output, "--output")
    predictor = Predictor(cfg, supports=args.supports)
    skipped = []
    for path, target in zip(images, targets):
        image, problem = read_image(path)
        if image is None:
            skipped.append((path, problem))
            continue
        rgb = cfg.INPUT.FORMAT == "RGB"
        out = predictor(image[:, :, ::-1].copy() if rgb else image)
        if not cv2.imwrite(target, draw(image, out, args.score_thresh)):
            raise ValueError(f"--output: could not write {target}")
        kept = int((out["scores"] >= args.score_thresh).sum())
        print(f"{path}: {kept} detection(s) -> {target}")
    if len(skipped) == len(images):
        raise ValueError(f"--input {args.input}: no image could be read; "
                         + "; ".join(f"{p}: {why}" for p, why in skipped[:5]))
    if skipped:
        print(f"warning: {len(skipped)} of {len(images)} images could not be read and were "
              f"skipped: " + ", ".join(f"{os.path.basename(p)} ({why})" for p, why in skipped),
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
