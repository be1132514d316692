"""Export a generator checkpoint to ONNX (uint8 frame in, uint8 frame out), verified.

    python -m engine.export --checkpoint weights/drnn.pt --out weights/drnn.onnx
    python -m engine.export --checkpoint weights/drnn.pt --out weights/drnn_fp16.onnx --fp16

See :mod:`engine.onnx_export` for what the graph contains and how it is checked.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.checkpoint import CheckpointError
from engine.onnx_export import DEFAULT_OPSET, MAX_EDGE_CONTEXT, ParityError, export_checkpoint, max_opset
from engine.weights import WeightsError, WeightsNotFound
from training.argparsing import OneLineParser
from training.outputs import PathError, check_output_file, readable_file

__all__ = ["ExportConfig", "main"]


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    out: Path
    fp16: bool = False
    opset: int = DEFAULT_OPSET
    check: bool = True
    context: int | None = None


def _parse(argv: list[str] | None) -> ExportConfig:
    parser = OneLineParser(prog="python -m engine.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="generator checkpoint (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--fp16", action="store_true", help="float16 weights and activations (uint8 I/O kept)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {DEFAULT_OPSET} (torch's exporter cannot go lower) up to the highest the "
                             "installed onnx knows (default %(default)s)")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the checker and parity check")
    parser.add_argument("--edge-context", type=int, default=None, metavar="PIXELS",
                        help="mirrored context around the frame against edge seams (default: the network's "
                             "receptive-field radius rounded up to 8, 24 for the DRNN; 0: none, faster; at most "
                             f"{MAX_EDGE_CONTEXT}, the largest frame side less one, as more cannot take effect; "
                             "the export time grows with it)")
    args = parser.parse_args(argv)
    if not DEFAULT_OPSET <= args.opset <= max_opset():
        parser.error(f"--opset must be {DEFAULT_OPSET}..{max_opset()}, got {args.opset}")
    if args.edge_context is not None and not 0 <= args.edge_context <= MAX_EDGE_CONTEXT:
        parser.error(f"--edge-context must be 0..{MAX_EDGE_CONTEXT} pixels, got {args.edge_context}")
    return ExportConfig(args.checkpoint, args.out, args.fp16, args.opset, args.check, args.edge_context)


def main(argv: list[str] | None = None) -> int:
    config = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("engine").setLevel(logging.INFO)  # its stages; not the exporter libraries' chatter
    try:
        readable_file(config.checkpoint, "--checkpoint")
        check_output_file(config.out, "--out", create=True)
        out = export_checkpoint(config.checkpoint, config.out, fp16=config.fp16, opset=config.opset, check=config.check,
                                context=config.context)
    except (PathError, CheckpointError, WeightsError, WeightsNotFound, ParityError) as exc:
        print(f"engine.export: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the write itself failed (disk full, folder removed meanwhile)
        print(f"engine.export: error: --out {config.out}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {'float16' if config.fp16 else 'float32'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
