#!/usr/bin/env python
"""The web app: teach classes from boxes drawn on photos, detect, review a split.

    python tools/app.py --config CFG --weights CKPT [--data SPEC ...] [--root DIR ...] \
        [--supports FILE] [--port 8000] [--host 127.0.0.1] [KEY VALUE ...]

Same options as the ``fewshot-app`` command (``pip install -e ".[app]"``); see docs/app.md.
"""
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tools/train_net.py

from fewshot_det.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
