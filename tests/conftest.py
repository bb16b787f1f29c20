import os

# Before torch loads OpenMP: with the default (spinning) wait policy, two processes sharing
# 2 cores (pytest + a data worker, or CI beside anything) slow each other down 10-20x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

BCCD = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "BCCD")


@pytest.fixture(scope="session")
def bccd_root():
    root = os.path.abspath(os.environ.get("FEWSHOT_BCCD", BCCD))
    if not os.path.isdir(root):
        pytest.skip(f"BCCD not found at {root} (set FEWSHOT_BCCD)")
    return root
