"""Export to ONNX / TorchScript (``exporter``) and run the exported file (``runner``).

``tools/export_model.py`` is the command line; ``pip install 'fewshot_det[export]'`` adds
onnx and onnxruntime (TorchScript needs neither).
"""
from .exporter import FORMATS, export_model
from .runner import ExportedModel, ExportedPredictor

OnnxPredictor = ExportedPredictor  # the same runner reads .onnx and TorchScript files

__all__ = ["FORMATS", "ExportedModel", "ExportedPredictor", "OnnxPredictor", "export_model"]
