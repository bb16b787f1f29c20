"""The synthetic set drawn in the training process (first use), then a loader with forked
workers. OpenCV's thread pool, live in the parent after drawing, can deadlock a forked
worker (cv2.setNumThreads in the child): the quick start would hang on a fresh machine.
Run in a subprocess so a deadlock fails on the timeout instead of hanging the suite."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys
    from fewshot_det import get_cfg
    from fewshot_det.data.build import build_train_loader_from_config
    from fewshot_det.data.synthetic import register_synthetic

    register_synthetic(sys.argv[1], prefix="forkshapes", num_train=30, num_test=1)
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("forkshapes_train",)
    cfg.DATALOADER.NUM_WORKERS = 1
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.INPUT.MIN_SIZE_TRAIN = (256,)
    loader, _ = build_train_loader_from_config(cfg)
    batches = iter(loader)
    for _ in range(3):
        assert len(next(batches)) == 4
    print("loaded", flush=True)
    os._exit(0)  # the endless loader's worker is not joined
""")


def test_forked_worker_after_drawing_the_synthetic_set(tmp_path):
    root = str(tmp_path / "shapes")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, root], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded" in proc.stdout
