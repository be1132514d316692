"""Inference engine: ONNX export, TensorRT / torch / ONNX Runtime backends behind one ``Despeckler``.

Importing this package never imports torch, TensorRT or CUDA bindings: each backend imports its
own heavy dependency inside its module, loaded on demand from the registry in ``engine.registry``.
"""
