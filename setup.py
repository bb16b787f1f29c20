"""Install fewshot_det: `pip install -e .` (add `[export]` for ONNX export, `[test]` for the
test suite)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


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
        "test": ["pytest>=7", "pycocotools>=2.0.6", "onnx>=1.14", "onnxruntime>=1.16"],
        "bench": ["faster-coco-eval>=1.5", "psutil>=5.9"],
    },
    include_package_data=True,
)
