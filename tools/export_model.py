#!/usr/bin/env python
"""Export a trained model to ONNX or TorchScript, and check it against PyTorch.

    python tools/export_model.py --config CFG --weights output/model_final.pth \
        --format onnx|torchscript --output model.onnx [--supports DATASET|protos.pth] \
        [--check IMAGE_OR_FOLDER] [--overwrite] [KEY VALUE ...]

A siamese model's class prototypes are baked into the file: from --supports (every
annotated object of a registered dataset, e.g. a K-shot split, or a file written by
``SiameseRCNN.save_prototypes``), else those saved in the checkpoint. After writing, the
exported model runs beside the PyTorch one on the --check images (default: three random
images of different sizes) and the tool fails if their detections differ. Run the file
with ``fewshot_det.export.ExportedPredictor`` (onnxruntime or TorchScript).

Before any export work, --output is checked: never one of the inputs (the weights, the
config, the supports file, a --check image), a file path in a writable folder, and an
existing file there (an earlier export or anything else) is replaced only with
--overwrite. The --check images are read (truncated files refused) before the export too.
"""
import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tools/train_net.py

from fewshot_det.engine.defaults import add_debug_argument, run_tool


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--weights", required=True, metavar="CKPT")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    p.add_argument("--output", required=True, metavar="FILE", help="the exported file")
    p.add_argument("--supports", metavar="DATASET|FILE",
                   help="classes given by examples, baked in: a support file (JSON, as the "
                        "app saves it; siamese prototypes or imprinted cosine rows), a "
                        "prototype file or a dataset (siamese)")
    p.add_argument("--check", metavar="IMAGE|FOLDER",
                   help="images to compare PyTorch and the export on (default: random)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file at --output (never one of the inputs)")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = p.parse_args(argv)
    return run_tool(run, args, debug=args.debug)


def run(args) -> int:
    import time

    from fewshot_det.engine.defaults import load_config, setup_logging
    from fewshot_det.engine.predictor import Predictor
    from fewshot_det.export import ExportedPredictor, export_model
    from fewshot_det.export.check import (check_files, check_images, compare_predictors,
                                          set_export_supports)
    from fewshot_det.export.exporter import check_export_output

    setup_logging(None)
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights {args.weights}: no such file")
    supports = [args.supports] if args.supports and os.path.isfile(args.supports) else []
    check_export_output(args.output, {"--weights": [args.weights], "--config": [args.config],
                                      "--supports": supports,
                                      "--check": check_files(args.check)}, args.overwrite)
    cfg = load_config(args.config, args.opts + ["MODEL.WEIGHTS", args.weights,
                                                "MODEL.DEVICE", "cpu"])
    images = check_images(args.check, cfg)
    predictor = Predictor(cfg)
    if args.supports:
        set_export_supports(predictor, args.supports)
    start = time.perf_counter()
    export_model(predictor.model, predictor.cfg, args.output, args.format,
                 predictor.class_names)
    size_mb = os.path.getsize(args.output) / 2 ** 20
    print(f"wrote {args.output} ({args.format}, {size_mb:.1f} MB) in "
          f"{time.perf_counter() - start:.1f} s")
    report = compare_predictors(predictor, ExportedPredictor(args.output), images)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
