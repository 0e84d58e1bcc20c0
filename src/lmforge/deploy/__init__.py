"""Deployment: ``lmforge export`` (merged Hugging Face folder, ONNX, int8 ONNX).

Kept import-light: ``onnxruntime`` and the ONNX exporter load only inside the functions
that need them.
"""
