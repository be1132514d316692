"""End-to-end latency of the live chain: ``python -m benchmarks.latency``.

Starts the real chain as it is deployed, each stage its own process on this machine::

    python -m stream.grabber --source sim      --publish tcp://127.0.0.1:P1   (paced at --fps)
    python -m stream.despeckler --subscribe P1 --publish tcp://127.0.0.1:P2   (--backend)
    stream.client.Subscriber(P2)                                              (this process)

discards the first ``--warmup`` frames the subscriber gets, then records ``--frames`` frames and
stops both processes with SIGINT.  Every frame carries its capture time and a wall-clock stamp
per stage (see ``stream/protocol.py``), so per frame::

    hop 1       = stamps.receive   - stamps.grab        encode, ZeroMQ grabber -> despeckler, decode
    despeckle   = stamps.despeckle - stamps.receive     wait for the engine + inference
    hand-over   = stamps.publish   - stamps.despeckle   wait for the publisher thread
    hop 2       = subscriber time  - stamps.publish     encode, ZeroMQ despeckler -> subscriber, decode
    end to end  = subscriber monotonic time - capture_mono_ns   (one host: one monotonic clock)

Reported per stage: p50, p90, p99, p99.9 and max (ms; p99.9 means something only beyond 1,000
frames), the throughput ``(n - 1) / (t_last - t_first)`` at the subscriber, and drops: frames
the grabber numbered inside the measured window that never reached the subscriber.

Next to it: the compute floor of the DRNN on this device (:mod:`benchmarks.floor`) and, for a
model backend with torch installed, the paper-style baseline (eager PyTorch FP32, one frame at a
time) timed in the same run on the same frames, after the chain has stopped.

Writes ``latency.json``, ``latency.png`` (histogram and CDF) and the two processes' logs to ``--out``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.cli import check_outputs
from benchmarks.floor import Floor, FloorError, compute_floor, conv_cost, cpu_name, measure_cpu, measure_cuda
from benchmarks.modelfiles import ModelFiles, eager_baseline, given_files, model_files, weights_for
from engine.registry import BACKENDS
from engine.weights import WeightsError, WeightsNotFound, resolve_weights
from stream.client import Subscriber
from stream.config import cuda_graphs_refusal
from training.argparsing import OneLineParser, frame_size, non_negative_int, positive_float, positive_int

__all__ = ["LatencyConfig", "LatencyReport", "ChainError", "free_endpoint", "percentiles", "run_latency", "write_outputs", "main"]

REPO = Path(__file__).resolve().parents[1]
#: the order of the stage columns; each is (name, later stamp, earlier stamp).
STAGES = (("hop 1", "receive", "grab"), ("despeckle", "despeckle", "receive"), ("hand-over", "publish", "despeckle"))
QUANTILES = (50.0, 90.0, 99.0, 99.9)
#: longest wait for any one frame (a 1080x1920 frame of the full DRNN takes ~50 s on 2 CPU cores), seconds.
FRAME_TIMEOUT_S = 180.0
#: seconds between checks, while waiting for a frame, that every stage of the chain is still running
POLL_S = 0.5
STOP_TIMEOUT_S = 5.0


class ChainError(RuntimeError):
    """The chain did not start or stopped delivering frames (the text names the process and its log)."""


@dataclass(frozen=True)
class LatencyConfig:
    """``size``: (H, W) of the simulated frames; ``frames``: recorded after ``warmup`` discarded ones;
    ``baseline_frames``: frames per side of the eager-PyTorch comparison (0: skip it);
    ``baseline_threads``: CPU threads of both sides of that comparison (None: each library's default,
    all cores).  On a CPU shared with other work, 1 thread avoids the waits of multi-threaded kernels
    for a busy core, which penalise the library with more parallel regions (eager PyTorch).
    ``cuda_graphs``: the despeckler runs with ``--cuda-graphs`` (torch on a CUDA GPU);
    ``flip_average``: with ``--flip-average`` (:mod:`engine.flip`: two model runs per frame; the
    floor and the eager baseline stay one run's)."""

    backend: str = "identity"
    fps: float = 30.0
    size: tuple[int, int] = (512, 512)
    frames: int = 300
    warmup: int = 30
    out: Path = Path("runs/latency")
    weights: Path | None = None
    baseline_frames: int = 5
    tiny_model: bool = False
    baseline_threads: int | None = None
    cuda_graphs: bool = False
    flip_average: bool = False


@dataclass
class LatencyReport:
    """Everything one run measured (times in ms unless the name says otherwise)."""

    config: dict[str, Any]
    machine: dict[str, Any]
    stages: dict[str, dict[str, float]]
    throughput_fps: float
    drops: int
    received: int
    despeckler_status: str
    floor: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)


def percentiles(samples: list[float] | np.ndarray) -> dict[str, float]:
    """``{"n", "p50", "p90", "p99", "p99.9", "max"}`` of ``samples`` (numpy's linear interpolation)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("percentiles of no samples")
    stats = {f"p{q:g}": float(np.percentile(values, q)) for q in QUANTILES}
    return {"n": int(values.size), **stats, "max": float(values.max())}


def free_endpoint() -> str:
    """A ``tcp://127.0.0.1:PORT`` endpoint whose port was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as sink:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _last_status(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "malformed" in ln]
    return lines[-1].split(" ", 1)[-1] if lines else ""


def _last_line(log: Path) -> str:
    """The last line a stage logged (its error, when it exits at once), without the time stamp."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return re.sub(r"^\d\d:\d\d:\d\d ", "", lines[-1]).strip() if lines else ""


def _collect(cfg: LatencyConfig, endpoint: str, procs: dict[str, tuple[subprocess.Popen, Path]]) -> list[tuple[dict, int, int]]:
    """``(meta, receipt wall ns, receipt monotonic ns)`` of the recorded frames."""
    got: list[tuple[dict, int, int]] = []
    with Subscriber(endpoint) as sub, tqdm(total=cfg.warmup + cfg.frames, desc="frames", unit="frame", leave=False) as bar:
        while len(got) < cfg.warmup + cfg.frames:
            waited = 0.0
            while True:  # short waits, so that a stage that dies is reported at once
                frame = sub.receive(POLL_S)
                wall, mono = time.time_ns(), time.monotonic_ns()
                for name, (proc, log) in procs.items():
                    if proc.poll() is not None:
                        said = _last_line(log)
                        raise ChainError(f"{name} exited with status {proc.returncode}; see {log}" + (f": {said}" if said else ""))
                waited += POLL_S
                if frame is not None or waited >= FRAME_TIMEOUT_S:
                    break
            if frame is None:
                raise ChainError(f"no frame for {FRAME_TIMEOUT_S:.0f} s from {endpoint}; see the logs in {cfg.out}")
            got.append((frame[1], wall, mono))
            bar.update()
    return got[cfg.warmup :]


def _stage_stats(frames: list[tuple[dict, int, int]]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    stages["hop 2"], stages["end to end"] = [], []
    for meta, wall, mono in frames:
        stamps = meta["stamps"]
        for name, later, earlier in STAGES:
            stages[name].append((stamps[later] - stamps[earlier]) / 1e6)
        stages["hop 2"].append((wall - stamps["publish"]) / 1e6)
        stages["end to end"].append((mono - meta["capture_mono_ns"]) / 1e6)
    return {name: percentiles(values) for name, values in stages.items()}


def _device_floor(cfg: LatencyConfig, files: ModelFiles) -> Floor:
    """The DRNN's floor on the device the despeckler computes on (GPU for TensorRT or torch on CUDA)."""
    backend = cfg.backend
    if backend == "auto":
        from engine.registry import choose_backend

        backend = choose_backend()[0]
    on_gpu = backend == "tensorrt"
    if backend == "torch":
        import torch

        on_gpu = torch.cuda.is_available()
    device = measure_cuda(fp16=True) if on_gpu else measure_cpu()
    return compute_floor(conv_cost(files.onnx), *cfg.size, device)


def _time_per_frame(fn, frame: np.ndarray, rounds: int) -> list[float]:
    fn(frame)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _baseline(cfg: LatencyConfig, files: ModelFiles) -> dict[str, Any]:
    """Median ms per frame of the chosen backend's ``infer`` and of eager PyTorch FP32, same frame."""
    import torch

    from engine.registry import create_backend

    frame = np.random.default_rng(0).integers(0, 256, cfg.size, dtype=np.uint8)
    threads = cfg.baseline_threads
    options = {"threads": threads} if threads and cfg.backend in ("onnxruntime", "torch") else {}
    with create_backend(cfg.backend, cfg.weights or weights_for(cfg.backend, files),
                        **options) as engine:  # the network alone against eager torch: no grey-level map
        ours = _time_per_frame(engine.infer, frame, cfg.baseline_frames)
        describe = engine.describe()
    if threads:
        torch.set_num_threads(threads)
    eager = _time_per_frame(eager_baseline(files.checkpoint), frame, cfg.baseline_frames)
    ours_ms, eager_ms = float(np.median(ours)), float(np.median(eager))
    return {"backend": describe, "backend_ms": ours_ms, "eager_torch_fp32_ms": eager_ms, "speedup": eager_ms / ours_ms,
            "rounds": cfg.baseline_frames, "threads": torch.get_num_threads()}


def _floor_and_baseline(cfg: LatencyConfig, files: ModelFiles, report: LatencyReport) -> list[str]:
    """Fill ``report.floor`` and ``report.baseline`` where the model's files allow; notes say what was skipped."""
    notes = []
    if files.onnx is None:
        notes.append("compute floor skipped: no ONNX file to count the model's convolutions in")
    else:
        try:
            report.floor = _device_floor(cfg, files).as_dict()
        except FloorError as exc:
            notes.append(f"compute floor skipped: {exc}")
    if not cfg.baseline_frames:
        return notes
    if not _torch_installed():
        notes.append("eager PyTorch baseline skipped: torch is not installed")
    elif files.checkpoint is None:
        notes.append("eager PyTorch baseline skipped: no checkpoint the model file was exported from lies beside it")
    else:
        report.baseline = _baseline(cfg, files)
    return notes


def _machine() -> dict[str, Any]:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "python": sys.version.split()[0]}


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def run_latency(cfg: LatencyConfig) -> LatencyReport:
    """Run the chain of the module docstring and measure it (see there for every figure)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    notes: list[str] = []
    files = None
    model = cfg.backend != "identity"
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        if model:  # the floor and the baseline measure the model that runs: --weights if given
            files = given_files(cfg.weights, Path(tmp)) if cfg.weights else model_files(Path(tmp), tiny=cfg.tiny_model)
            notes.append(files.note)
        grab, publish = free_endpoint(), free_endpoint()
        h, w = cfg.size
        common = ["--status", "1"]
        weights = cfg.weights or (weights_for(cfg.backend, files) if files else None)
        despeckle_args = ["--subscribe", grab, "--publish", publish, "--backend", cfg.backend, *common]
        despeckle_args += ["--cuda-graphs"] if cfg.cuda_graphs else []
        if cfg.flip_average and model:
            despeckle_args += ["--flip-average"]
            notes.append("flip-averaged: two model runs per frame; the compute floor and the eager baseline are one run's")
        # the stages run from the repository root: a path relative to the caller's folder is resolved here
        despeckle_args += ["--weights", str(Path(weights).resolve())] if weights else []
        procs = {}
        try:
            for name, module, args in (
                ("despeckler", "stream.despeckler", despeckle_args),
                ("grabber", "stream.grabber", ["--source", "sim", "--size", f"{h}x{w}", "--fps", str(cfg.fps), "--publish", grab, *common]),
            ):
                log = cfg.out / f"{name}.log"
                procs[name] = (_start(module, args, log), log)
            frames = _collect(cfg, publish, procs)
        finally:
            codes = {name: _stop(proc) for name, (proc, _) in procs.items()}
        notes += [f"{name} exited with status {code} after SIGINT" for name, code in codes.items() if code != 0]
        seqs = [meta["seq"] for meta, _, _ in frames]
        span_s = (frames[-1][2] - frames[0][2]) / 1e9
        report = LatencyReport(
            config={**asdict(cfg), "out": str(cfg.out), "weights": str(weights) if weights else None},
            machine=machine,
            stages=_stage_stats(frames),
            throughput_fps=(len(frames) - 1) / span_s if span_s > 0 else float("nan"),
            drops=(max(seqs) - min(seqs) + 1) - len(set(seqs)),
            received=len(frames),
            despeckler_status=_last_status(cfg.out / "despeckler.log"),
            end_to_end_ms=[(mono - meta["capture_mono_ns"]) / 1e6 for meta, _, mono in frames],
        )
        if files is not None:
            notes += _floor_and_baseline(cfg, files, report)
    report.machine["loadavg_1m_end"] = os.getloadavg()[0]
    report.notes = notes
    return report


def summary(report: LatencyReport) -> str:
    """The printed table: one row per stage, then throughput, drops, floor and baseline."""
    cfg = report.config
    rows = [f"{cfg['backend']} | {cfg['size'][0]}x{cfg['size'][1]} | {cfg['fps']:g} fps | {report.received} frames after "
            f"{cfg['warmup']} warm-up | {report.machine['cpu']}, {report.machine['cores']} cores, load {report.machine['loadavg_1m']:.1f}"]
    rows.append(f"{'stage (ms)':12s}" + "".join(f"{k:>9s}" for k in ("p50", "p90", "p99", "p99.9", "max")))
    for name, s in report.stages.items():
        rows.append(f"{name:12s}" + "".join(f"{s[k]:9.2f}" for k in ("p50", "p90", "p99", "p99.9", "max")))
    rows.append(f"throughput {report.throughput_fps:.1f} frames/s, drops {report.drops} (subscriber side)")
    rows.append(f"despeckler: {report.despeckler_status}")
    if report.floor:
        f = report.floor
        measured = report.stages["despeckle"]["p50"] / 1e3
        rows.append(f"compute floor: {f['flops'] / 1e9:.2f} GFLOP at {f['device']['peak_flops'] / 1e9:.0f} GFLOP/s, "
                    f"{f['bytes'] / 1e6:.0f} MB at {f['device']['bandwidth'] / 1e9:.1f} GB/s -> {f['floor_s'] * 1e3:.2f} ms; "
                    f"despeckle p50 / floor = {measured / f['floor_s']:.1f}x ({f['device']['name']})")
    if report.baseline:
        b = report.baseline
        rows.append(f"baseline ({b['threads']} threads): {b['backend_ms']:.1f} ms/frame vs eager PyTorch FP32 "
                    f"{b['eager_torch_fp32_ms']:.1f} ms/frame -> {b['speedup']:.2f}x faster")
    rows += [f"note: {n}" for n in report.notes]
    return "\n".join(rows)


def write_outputs(report: LatencyReport, out: Path) -> list[Path]:
    """``latency.json`` (everything, with the raw end-to-end samples) and ``latency.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = asdict(report)
    data["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    json_path = out / "latency.json"
    json_path.write_text(json.dumps(data, indent=1))
    e2e = np.sort(np.asarray(report.end_to_end_ms))
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    hist.hist(e2e, bins=min(100, max(10, e2e.size // 10)))
    hist.set(xlabel="capture -> subscriber (ms)", ylabel="frames", title="end-to-end latency")
    cdf.plot(e2e, np.arange(1, e2e.size + 1) / e2e.size)
    for q in (50, 99):
        cdf.axvline(np.percentile(e2e, q), ls=":", c="grey")
    cdf.set(xlabel="capture -> subscriber (ms)", ylabel="fraction of frames", title="CDF (dotted: p50, p99)")
    c = report.config
    graphs = (", CUDA graphs" if c.get("cuda_graphs") else "") + (", flip-averaged" if c.get("flip_average") else "")
    fig.suptitle(f"{c['backend']}{graphs}, {c['size'][0]}x{c['size'][1]}, {c['fps']:g} fps, {report.machine['cpu']}")
    fig.tight_layout()
    png_path = out / "latency.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return [json_path, png_path]


def parse_args(argv: list[str] | None = None) -> LatencyConfig:
    p = OneLineParser(prog="python -m benchmarks.latency", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="identity", choices=["auto", *BACKENDS],
                   help="despeckler backend: identity, onnxruntime, torch, tensorrt, auto (default: identity)")
    p.add_argument("--fps", type=positive_float, default=30.0, help="grabber frame rate (default: 30)")
    p.add_argument("--size", type=frame_size(16, square=False), default=(512, 512), metavar="HxW", help="frame size (default: 512x512)")
    p.add_argument("--frames", type=positive_int, default=300, help="frames recorded (default: 300)")
    p.add_argument("--warmup", type=non_negative_int, default=30, help="frames received and discarded first (default: 30)")
    p.add_argument("--out", type=Path, default=Path("runs/latency"), help="output folder (default: runs/latency)")
    p.add_argument("--weights", type=Path, default=None,
                   help="model file for the backend, or a shipped model's name: default, fast, int8, fast-int8 "
                        "(default: shipped, else a random full-size DRNN)")
    p.add_argument("--baseline-frames", type=non_negative_int, default=5,
                   help="frames per side of the eager-PyTorch comparison, 0 skips it (default: 5)")
    p.add_argument("--baseline-threads", type=positive_int, default=None, help="CPU threads of both sides of the eager-PyTorch comparison (default: all cores)")
    p.add_argument("--tiny-model", action="store_true", help="a tiny random DRNN instead of the full size (smoke runs only)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="the despeckler replays CUDA graphs (--backend torch or auto on a CUDA GPU; stream.run's flag)")
    p.add_argument("--flip-average", action="store_true",
                   help="the despeckler averages each output with the output on the mirrored frame (stream.run's flag; "
                        "two model runs per frame)")
    a = p.parse_args(argv)
    if a.weights is not None:
        try:  # a name becomes the file the backend reads: the checkpoint for torch, else the ONNX file
            a.weights = resolve_weights(a.weights, (".pt",) if a.backend == "torch" else (".onnx",))
        except WeightsNotFound as exc:
            p.error(f"--weights: {exc}")
    check_outputs(p, folders={"--out": a.out})
    refusal = cuda_graphs_refusal(a.backend) if a.cuda_graphs else None
    if refusal:
        p.error(refusal)
    return LatencyConfig(a.backend, a.fps, a.size, a.frames, a.warmup, a.out, a.weights, a.baseline_frames, a.tiny_model,
                         a.baseline_threads, a.cuda_graphs, a.flip_average)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        report = run_latency(cfg)
    except (ChainError, WeightsError) as exc:
        print(f"benchmarks.latency: {exc}", file=sys.stderr)
        return 1
    print(summary(report))
    try:
        written = write_outputs(report, cfg.out)
    except OSError as exc:
        print(f"benchmarks.latency: --out {cfg.out}: cannot write the results ({exc})", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
