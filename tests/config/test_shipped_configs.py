"""Every YAML file under configs/ merges: no renamed or misspelt key, no wrong type (their
datasets are not here, so dataset-dependent checks are not run)."""
import glob
import os

import pytest

from fewshot_det import get_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))


def test_configs_are_found():
    assert len(CONFIGS) > 20


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_config_loads(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.MODEL.META_ARCHITECTURE
