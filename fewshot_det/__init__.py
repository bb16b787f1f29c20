"""fewshot_det: few-shot object detection that installs with pip and runs on a CPU.

Importing the package is cheap and does not import torch, so evaluating a results file
(``tools/eval.py --gt ... --predictions ...``) works without it. ``Predictor`` and the model
code load torch on first use.
"""
__version__ = "0.1.0"

from .config import get_cfg  # noqa: E402


def __getattr__(name):
    # Lazy: only users of the model pay for importing torch.
    if name == "Predictor":
        from .engine.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'fewshot_det' has no attribute {name!r}")


__all__ = ["get_cfg", "Predictor", "__version__"]
