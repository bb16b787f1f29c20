#!/usr/bin/env python
"""Time loading BCCD's 364 records and one epoch of training batches (0 and 2 workers).

    python benchmarks/data_loader_speed.py [--root datasets/BCCD] [--batch 4]

Each setting runs in its own process so peak memory (ru_maxrss of the main process and of
its worker processes) is that setting's alone. Images go through the training pipeline
(shortest-edge resize to 480-608, flip) into tensors, as the trainer consumes them.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ROOT = os.path.join(HERE, "..", "datasets", "BCCD")


def run_one(root: str, workers: int, batch: int) -> dict:
    from fewshot_det.data import get_dataset
    from fewshot_det.data.build import build_train_loader
    from fewshot_det.data.mapper import DatasetMapper
    from fewshot_det.data.transforms import build_transforms

    t0 = time.perf_counter()
    records = []
    for split in ("trainval", "test"):
        records += get_dataset(f"voc:{root}:{split}")[0]
    load_s = time.perf_counter() - t0
    mapper = DatasetMapper(transforms=build_transforms(
        is_train=True, resize_mode="shortest_edge", min_size_train=[480, 512, 544, 576, 608],
        max_size_train=1000, min_size_sampling="choice", min_size_test=0, max_size_test=0,
        fixed_size=0, flip_prob=0.5))
    loader = build_train_loader(records, mapper, total_batch_size=batch, seed=0,
                                num_workers=workers)
    n_batches = len(records) // batch
    me, worker_mb = psutil.Process(), 0.0
    t0 = time.perf_counter()
    it = iter(loader)
    for i in range(n_batches):
        next(it)
        if i % 8 == 0:  # sample the workers' resident memory while they run
            rss = [c.memory_info().rss for c in me.children() if c.is_running()]
            worker_mb = max([worker_mb] + [r / 2**20 for r in rss])
    epoch_s = time.perf_counter() - t0
    del it
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = worker_mb
    return {"workers": workers, "records": len(records), "load_records_s": round(load_s, 3),
            "epoch_s": round(epoch_s, 2), "images_per_s": round(n_batches * batch / epoch_s, 1),
            "peak_rss_main_mb": round(self_mb), "peak_rss_worker_mb": round(child_mb)}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(run_one(os.path.abspath(args.root), args.child, args.batch)))
        return
    rows = []
    for w in args.workers:
        out = subprocess.run([sys.executable, __file__, "--root", args.root, "--batch",
                              str(args.batch), "--child", str(w)], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"BCCD data loader, batch {args.batch}, {os.cpu_count()} CPU cores")
    print("| workers | records | load records (s) | epoch (s) | images/s | peak RSS main (MB) "
          "| peak RSS per worker (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['records']} | {r['load_records_s']} | {r['epoch_s']} | "
              f"{r['images_per_s']} | {r['peak_rss_main_mb']} | {r['peak_rss_worker_mb']} |")


if __name__ == "__main__":
    main()
