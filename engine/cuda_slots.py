"""CUDA resources as owning objects, and the slot pipeline that overlaps copies with compute.

Uses NVIDIA's ``cuda-python`` runtime bindings (``from cuda.bindings import runtime``, or the older
``from cuda import cudart``), imported when this module loads: import it only where a GPU is used.
Every CUDA call goes through :func:`check`, which raises :class:`CudaError` with the error's name.

Pipelining (:class:`SlotPipeline`): ``N`` slots, each with its own stream, event, pinned host
buffers and device buffers (and, for TensorRT, its own execution context).  One frame::

    frame -> pinned host_in -> (async H2D) dev_in -> compute(slot) -> dev_out
          -> (async D2H) pinned host_out -> event

all enqueued on the slot's stream, so frame ``k + 1`` uploads while frame ``k`` computes.  Frame
``k`` uses slot ``k mod N``; reusing a slot first collects the result it still holds, so results
come back strictly in submission order and no pinned buffer is overwritten before it is read.
One thread submits; handles may be resolved from that thread in any order.
"""

from __future__ import annotations

import abc
import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.base import Handle

try:
    from cuda.bindings import runtime as cudart
except ImportError:  # cuda-python < 12.6 spells it this way
    from cuda import cudart

__all__ = [
    "CudaError",
    "check",
    "HostBuffer",
    "DeviceBuffer",
    "Stream",
    "Event",
    "Slot",
    "SlotPipeline",
    "device_properties",
]


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and the CUDA error."""


def check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack a ``cuda-python`` result ``(err, *values)``: raise :class:`CudaError` unless ``err`` is
    ``cudaSuccess``; return ``None``, the single value, or the tuple of values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        _, text = cudart.cudaGetErrorString(err)
        raise CudaError(f"{what} failed: {name.decode()} ({text.decode()})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class _Owned(abc.ABC):
    """Base of the owning wrappers: ``close()`` frees once; ``with`` closes."""

    _freed = True

    @abc.abstractmethod
    def _free(self) -> None:
        """Release the resource (called once, by :meth:`close`)."""

    def close(self) -> None:
        if not self._freed:
            self._freed = True
            self._free()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HostBuffer(_Owned):
    """Page-locked (pinned) host memory of ``nbytes``; :attr:`array` is a uint8 numpy view of it."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        self._freed = False
        self.array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(self.ptr))

    def _free(self) -> None:
        del self.array
        check(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")


class DeviceBuffer(_Owned):
    """Device memory of ``nbytes``; :meth:`view` exposes it to torch/cupy via ``__cuda_array_interface__``."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        self._freed = False

    def _free(self) -> None:
        check(cudart.cudaFree(self.ptr), "cudaFree")

    def view(self, shape: tuple[int, ...], typestr: str = "|u1") -> _CudaArray:
        """A C-contiguous array description of the start of this buffer (no copy)."""
        itemsize = int(typestr[2:])
        if int(np.prod(shape)) * itemsize > self.nbytes:
            raise ValueError(f"view {shape} of {typestr} does not fit a {self.nbytes}-byte device buffer")
        return _CudaArray(self.ptr, shape, typestr)


class _CudaArray:
    """Minimal ``__cuda_array_interface__`` (v3) holder; ``stream: None`` = caller synchronises."""

    def __init__(self, ptr: int, shape: tuple[int, ...], typestr: str) -> None:
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": typestr,
            "data": (ptr, False),
            "version": 3,
            "strides": None,
            "stream": None,
        }


class Stream(_Owned):
    """A non-blocking CUDA stream; :attr:`handle` is its integer value (for TensorRT and torch)."""

    def __init__(self) -> None:
        self._stream = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")
        self.handle = int(self._stream)
        self._freed = False

    def _free(self) -> None:
        check(cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def copy(self, dst: int, src: int, nbytes: int, kind: Any) -> None:
        """Enqueue ``cudaMemcpyAsync`` of ``nbytes`` on this stream."""
        check(cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync")


class Event(_Owned):
    """A CUDA event without timing, used to know when a slot's output has landed in host memory."""

    def __init__(self) -> None:
        self._event = check(cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "cudaEventCreate")
        self._freed = False

    def _free(self) -> None:
        check(cudart.cudaEventDestroy(self._event), "cudaEventDestroy")

    def record(self, stream: Stream) -> None:
        check(cudart.cudaEventRecord(self._event, stream._stream), "cudaEventRecord")

    def synchronize(self) -> None:
        check(cudart.cudaEventSynchronize(self._event), "cudaEventSynchronize")


def device_properties(device: int = 0) -> dict[str, Any]:
    """Name, compute capability and SM count of CUDA device ``device`` (for engine cache keys)."""
    props = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {
        "gpu_name": name.rstrip("\x00"),
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": int(props.multiProcessorCount),
    }


class Slot:
    """One pipeline stage's resources.  Buffers grow to the largest frame seen (rounded to 1 MiB).

    ``state`` is the backend's per-slot object (a TensorRT execution context, torch CUDA graphs).
    """

    _GRAIN = 1 << 20

    def __init__(self, index: int, state: Any = None) -> None:
        self.index = index
        self.stream = Stream()
        self.event = Event()
        self.state = state
        self.capacity = 0
        self.host_in: HostBuffer | None = None
        self.host_out: HostBuffer | None = None
        self.dev_in: DeviceBuffer | None = None
        self.dev_out: DeviceBuffer | None = None
        self.pending: SlotHandle | None = None

    def reserve(self, nbytes: int) -> None:
        """Make every buffer hold at least ``nbytes`` (the slot must be idle)."""
        if nbytes <= self.capacity:
            return
        self._free_buffers()
        size = -(-nbytes // self._GRAIN) * self._GRAIN
        self.host_in, self.host_out = HostBuffer(size), HostBuffer(size)
        self.dev_in, self.dev_out = DeviceBuffer(size), DeviceBuffer(size)
        self.capacity = size

    def _free_buffers(self) -> None:
        for buf in (self.host_in, self.host_out, self.dev_in, self.dev_out):
            if buf is not None:
                buf.close()
        self.capacity = 0

    def close(self) -> None:
        if self.pending is not None:
            self.pending.collect()
        self.stream.synchronize()
        self._free_buffers()
        self.event.close()
        self.stream.close()


class SlotHandle(Handle):
    """A frame in flight in a slot; :meth:`result` waits for the slot's event and copies the frame out."""

    def __init__(self, slot: Slot, shape: tuple[int, int]) -> None:
        self._slot = slot
        self._shape = shape
        self._out: np.ndarray | None = None

    def collect(self) -> None:
        """Wait for this frame's output and move it out of the slot's pinned buffer."""
        if self._out is not None:
            return
        slot = self._slot
        slot.event.synchronize()
        n = self._shape[0] * self._shape[1]
        self._out = slot.host_out.array[:n].reshape(self._shape).copy()
        slot.pending = None

    def result(self) -> np.ndarray:
        self.collect()
        return self._out


#: ``compute(slot, height, width)`` enqueues the model on ``slot.stream`` reading ``slot.dev_in`` and
#: writing ``slot.dev_out`` (uint8, ``height * width`` bytes each).
Compute = Callable[[Slot, int, int], None]


class SlotPipeline:
    """``n_slots`` CUDA slots used round-robin; see the module docstring for the order guarantee.

    Args:
        compute: enqueues the model for one slot (see :data:`Compute`).
        n_slots: slots, i.e. frames on the device at once (2-3 hide the copies).
        make_state: builds each slot's ``state`` (e.g. a TensorRT execution context).
    """

    def __init__(self, compute: Compute, n_slots: int = 3, make_state: Callable[[int], Any] | None = None) -> None:
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        self._compute = compute
        self.slots: list[Slot] = []
        try:
            for i in range(n_slots):
                self.slots.append(Slot(i, make_state(i) if make_state else None))
        except BaseException:
            self.close()
            raise
        self._next = 0

    def submit(self, frame: np.ndarray) -> SlotHandle:
        """Enqueue one C-contiguous uint8 ``(H, W)`` frame; returns at once unless its slot is busy."""
        slot = self.slots[self._next]
        self._next = (self._next + 1) % len(self.slots)
        if slot.pending is not None:
            slot.pending.collect()
        h, w = frame.shape
        n = h * w
        slot.reserve(n)
        slot.host_in.array[:n] = frame.reshape(-1)
        slot.stream.copy(slot.dev_in.ptr, slot.host_in.ptr, n, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
        self._compute(slot, h, w)
        slot.stream.copy(slot.host_out.ptr, slot.dev_out.ptr, n, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        slot.event.record(slot.stream)
        handle = SlotHandle(slot, (h, w))
        slot.pending = handle
        return handle

    def close(self) -> None:
        """Wait for every frame in flight, then free all slots."""
        for slot in self.slots:
            slot.close()
        self.slots = []
