"""The model files the latency benchmarks run: the shipped weights, or a random DRNN of the same cost.

Backends need an ONNX export (ONNX Runtime, TensorRT) or a generator checkpoint (torch).  The
shipped ``weights/drnn.onnx`` and ``weights/drnn.pt`` are used when they exist; any that is
missing is made in ``workdir`` from a randomly initialised DRNN (seed 0) of the paper's size
(``tiny=True``: width 8, 2 blocks, for smoke runs).  Latency depends only on the architecture,
not on the weights' values, so a random full-size DRNN costs exactly what the trained one does;
``ModelFiles.note`` says which was used.  Making a file needs torch (imported inside).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.weights import WEIGHTS_DIR

__all__ = ["ModelFiles", "TINY_DRNN", "checkpoint_files", "given_files", "model_files", "weights_for", "eager_baseline"]

#: the DRNN of the smoke runs: same layer types as the paper's, about 1/200 of its cost.
TINY_DRNN = {"width": 8, "blocks": 2}


@dataclass(frozen=True)
class ModelFiles:
    """``onnx``: float32 export (uint8 in/out); ``checkpoint``: generator checkpoint; ``note``: where they came from.

    Either is ``None`` where a model named by the user has none (:func:`given_files`).
    """

    onnx: Path | None
    checkpoint: Path | None
    note: str


def _random_checkpoint(path: Path, config: dict) -> Path:
    import torch

    from training.checkpoint import CKPT_FORMAT, atomic_save
    from training.models import DRNN

    torch.manual_seed(0)
    net = DRNN(**config).eval()
    return atomic_save({"format": CKPT_FORMAT, "generator": net.state_dict(), "generator_config": net.config}, path)


def model_files(workdir: Path, tiny: bool = False, shipped: Path = WEIGHTS_DIR) -> ModelFiles:
    """Shipped ``drnn.onnx`` / ``drnn.pt`` from ``shipped`` (not with ``tiny``), else made in ``workdir``."""
    onnx, ckpt = shipped / "drnn.onnx", shipped / "drnn.pt"
    if not tiny and onnx.is_file() and ckpt.is_file():
        return ModelFiles(onnx, ckpt, f"shipped weights {shipped}")
    from engine.onnx_export import export_checkpoint

    workdir.mkdir(parents=True, exist_ok=True)
    config = TINY_DRNN if tiny else {}
    made = []
    if tiny or not ckpt.is_file():
        ckpt = _random_checkpoint(workdir / "drnn.pt", config)
        made.append("checkpoint")
    if tiny or not onnx.is_file():
        onnx = export_checkpoint(ckpt, workdir / "drnn.onnx")
        made.append("ONNX export")
    size = "tiny DRNN(width=8, blocks=2)" if tiny else "full-size DRNN (paper architecture, same cost as trained weights)"
    return ModelFiles(onnx, ckpt, f"randomly initialised {size}: {' and '.join(made)} made in {workdir}")


def checkpoint_files(checkpoint: Path, workdir: Path) -> ModelFiles:
    """A generator checkpoint and its float32 ONNX export, made in ``workdir`` (needs torch)."""
    from engine.onnx_export import export_checkpoint

    workdir.mkdir(parents=True, exist_ok=True)
    onnx = export_checkpoint(checkpoint, workdir / "drnn.onnx", check=False)
    return ModelFiles(onnx, checkpoint, f"checkpoint {checkpoint}")


def given_files(weights: Path, workdir: Path) -> ModelFiles:
    """The files of a model file the user named, so that floor and baseline measure that model.

    A checkpoint (``.pt``): itself and its export (:func:`checkpoint_files`).  An ONNX file: itself
    and the checkpoint in its folder that it was exported from (its ``checkpoint_sha256``
    metadata), or ``checkpoint=None`` if none is there.  Anything else (a TensorRT engine): neither.
    :class:`engine.weights.WeightsError` names a file that is not a checkpoint or ONNX model.
    """
    if weights.suffix == ".pt":
        from engine.checkpoint import CheckpointError
        from engine.weights import WeightsError

        try:
            return checkpoint_files(weights, workdir)
        except CheckpointError as exc:  # its text names the file
            raise WeightsError(str(exc)) from None
    if weights.suffix != ".onnx":
        return ModelFiles(None, None, f"model file {weights}")
    from engine.files import sha256_file
    from engine.onnx_export import read_onnx

    meta = {p.key: p.value for p in read_onnx(weights).metadata_props}
    source = meta.get("checkpoint_sha256")
    checkpoint = next((c for c in sorted(weights.parent.glob("*.pt")) if source and sha256_file(c) == source), None)
    return ModelFiles(weights, checkpoint, f"model file {weights}" + (f" (exported from {checkpoint})" if checkpoint else ""))


def weights_for(backend: str, files: ModelFiles) -> Path | None:
    """The file ``backend`` loads: none for ``identity``, the checkpoint for ``torch``, else the ONNX export."""
    if backend == "identity":
        return None
    return files.checkpoint if backend == "torch" else files.onnx


def eager_baseline(checkpoint: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The paper-style reference: the DRNN in eager PyTorch FP32 on the CPU, one frame at a time,
    batch norm not folded, under ``torch.inference_mode``, computing the engine's frame function
    (:class:`engine.torch_model.FrameModel`: scaling, rounding, black surroundings):
    ``uint8 (H, W) -> uint8 (H, W)``."""
    import torch

    from engine.checkpoint import load_generator
    from engine.torch_model import FrameModel

    model = FrameModel(load_generator(checkpoint), fold=False).eval()

    def run(frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(frame)).numpy()

    return run
