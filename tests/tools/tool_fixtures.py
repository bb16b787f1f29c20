"""Run a tool's ``main([...])`` in-process, and a tiny Faster R-CNN config + checkpoint."""
import importlib.util
import os

import torch

from fewshot_fixtures import tiny_cfg, tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_TEST = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160"]


def load_tool(name):
    """The module tools/<name>.py (imported under a private name: no clash with the
    package's modules)."""
    spec = importlib.util.spec_from_file_location(f"_tool_{name}",
                                                  os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(tool, argv, capsys):
    """(exit code, stdout, the stderr lines starting with "error:") of ``tool.main(argv)``."""
    rc = tool.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, [line for line in err.splitlines() if line.startswith("error:")], err


def tiny_rcnn_files(folder, num_classes=3, classes=("a", "b", "c")):
    """(config.yaml, checkpoint.pth) of a tiny random Faster R-CNN in ``folder``."""
    cfg_path = os.path.join(folder, "cfg.yaml")
    with open(cfg_path, "w") as f:
        f.write(tiny_cfg(*SMALL_TEST, siamese=False).dump())
    weights = os.path.join(folder, "model.pth")
    torch.save({"model": tiny_model(siamese=False, num_classes=num_classes).state_dict(),
                "extra": {"thing_classes": list(classes)}}, weights)
    return cfg_path, weights
