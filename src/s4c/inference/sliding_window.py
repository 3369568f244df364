"""Framework-neutral sliding-window inference over a predictor callable (compare MONAI's inferer).

The predictor takes a float32 batch (N, 1, P, P, P) and returns either

* labels (N, P, P, P) uint8 -> merged by majority vote (:class:`~s4c.inference.merge.LabelVoter`), or
* probabilities (N, C, P, P, P) float -> merged by mean-probability vote.

Tiling (:mod:`s4c.inference.tiling`) and merging (:mod:`s4c.inference.merge`) are separate; this
module only drives them. Arrays are Z, Y, X.

:func:`sliding_window_inference_async` is the same loop over an ``async`` predictor (a Triton BLS
call, say) that keeps ``in_flight`` batches outstanding, so voting one batch overlaps the network on
the next. It can be stopped between batches (``should_stop``) and bounds each batch's wait
(``batch_timeout_s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from s4c.inference.merge import LabelVoter, ProbabilityVoter
from s4c.inference.tiling import extract_patches, pad_to_window, padded_shape, window_origins
from s4c.labels import DEFAULT_STRIDE, NUM_CLASSES, PATCH_SIZE
from s4c.validation import check_volume

Predictor = Callable[[np.ndarray], np.ndarray]
AsyncPredictor = Callable[[np.ndarray], Awaitable[np.ndarray]]


class InferenceCancelled(RuntimeError):
    """``should_stop`` returned True between batches; the volume was not finished."""


class BatchTimeout(TimeoutError):
    """A predictor batch did not answer within ``batch_timeout_s``."""


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_output(out: object, n: int, window: int, num_classes: int) -> tuple[str, np.ndarray]:
    """Classify a predictor output as 'labels' or 'probabilities', or raise naming what is wrong.

    Value checks (label range, finiteness) are the voters' job, so they happen once. A torch tensor
    (labels left on a GPU) is accepted as labels for a voter that takes tensors.
    """
    if type(out).__module__.startswith("torch"):
        shape = tuple(out.shape)
        if shape != (n, window, window, window) or str(out.dtype) != "torch.uint8":
            raise ValueError(f"predictor tensor must be uint8 labels of shape {(n, window, window, window)}, "
                             f"got {out.dtype} {shape}")
        return "labels", out
    if not isinstance(out, np.ndarray):
        raise ValueError(f"predictor must return a numpy array, got {type(out).__name__}")
    cube = (window, window, window)
    if out.ndim == 4 and out.shape == (n, *cube):
        if out.dtype != np.uint8:
            raise ValueError(f"predictor labels must be uint8, got {out.dtype}")
        return "labels", out
    if out.ndim == 5 and out.shape == (n, num_classes, *cube):
        if out.dtype.kind != "f":
            raise ValueError(f"predictor probabilities must be floating point, got {out.dtype}")
        return "probabilities", out
    raise ValueError(f"predictor returned shape {out.shape} for a batch of {n}; expected "
                     f"{(n, *cube)} labels or {(n, num_classes, *cube)} probabilities")


class _Run:
    """One volume's tiling plan and its lazily created voter (shared by the sync and async drivers)."""

    def __init__(self, image: np.ndarray, window: int, stride: int, batch_size: int, num_classes: int,
                 pad_value: float | None, tie_priority: Sequence[int] | None, backend: str,
                 voter_factory: Callable[..., object] | None) -> None:
        check_volume(image, "image")
        self.window = _check_positive_int(window, "window")
        self.stride = _check_positive_int(stride, "stride")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.num_classes = _check_positive_int(num_classes, "num_classes")
        if self.stride > self.window:
            raise ValueError(f"stride {stride} is larger than the window {window}: voxels would be skipped")
        if pad_value is None:
            pad_value = float(image.min())
        elif not np.isfinite(pad_value):
            raise ValueError(f"pad_value must be finite, got {pad_value!r}")
        self.image_shape = image.shape
        self.padded = pad_to_window(image, self.window, pad_value)
        self.shape = padded_shape(image.shape, self.window)
        self.origins = window_origins(self.shape, self.window, self.stride)
        self.tie_priority = tie_priority
        self.backend = backend
        self.voter_factory = voter_factory
        self.voter = None
        self.kind: str | None = None

    def batches(self) -> list[np.ndarray]:
        """Origins of each batch, in the Z-major order the streaming voters need."""
        return [self.origins[i : i + self.batch_size] for i in range(0, len(self.origins), self.batch_size)]

    def new_buffer(self) -> np.ndarray:
        w = self.window
        return np.empty((min(self.batch_size, len(self.origins)), 1, w, w, w), dtype=np.float32)

    def extract(self, origins: np.ndarray, buffer: np.ndarray) -> np.ndarray:
        return extract_patches(self.padded, origins, self.window, buffer)

    def add(self, out: object, origins: np.ndarray) -> None:
        out_kind, out = _check_output(out, len(origins), self.window, self.num_classes)
        if self.voter is None:
            self.kind = out_kind
            if self.voter_factory is not None:
                self.voter = self.voter_factory(self.shape, self.window, self.stride, num_classes=self.num_classes,
                                                tie_priority=self.tie_priority)
            elif out_kind == "labels":
                self.voter = LabelVoter(self.shape, self.window, self.stride, num_classes=self.num_classes,
                                        tie_priority=self.tie_priority, backend=self.backend)
            else:
                self.voter = ProbabilityVoter(self.shape, self.window, num_classes=self.num_classes,
                                              tie_priority=self.tie_priority)
        elif out_kind != self.kind:
            raise ValueError(f"predictor switched from {self.kind} to {out_kind} between batches")
        self.voter.add(out, origins)

    def result(self) -> np.ndarray:
        assert self.voter is not None  # origins is never empty
        labels = self.voter.result()
        z, y, x = self.image_shape
        return labels[:z, :y, :x] if labels.shape != self.image_shape else labels


def sliding_window_inference(
    image: np.ndarray,
    predictor: Predictor,
    *,
    window: int = PATCH_SIZE,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = 8,
    num_classes: int = NUM_CLASSES,
    pad_value: float | None = None,
    tie_priority: Sequence[int] | None = None,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    voter_factory: Callable[..., object] | None = None,
) -> np.ndarray:
    """Label a whole (Z, Y, X) volume by voting over overlapping ``window``-cubed patches.

    Args:
        image: (Z, Y, X) real array (any integer or float dtype; patches are cast to float32).
        predictor: see the module docstring. Every call must return the same kind of output.
        window: patch side in voxels (64 for S4C).
        stride: window step in voxels, ``1 <= stride <= window``; the last window on each axis is
            flush with the far edge.
        batch_size: patches per predictor call.
        num_classes: number of label classes.
        pad_value: value for axes shorter than ``window``, which are padded at their far end and
            cropped back afterwards; ``None`` pads with the image minimum (air in a CT).
        tie_priority: class order for breaking vote ties, first wins (default tumour > duct >
            pancreas > background for 4 classes).
        backend: majority-vote kernel, 'auto', 'numba' or 'numpy'.
        progress: optional ``callback(done_patches, total_patches)`` after each batch.
        voter_factory: optional ``factory(shape, window, stride, num_classes=, tie_priority=)`` for
            another voter with the same ``add``/``result`` interface (the GPU voter).

    Returns:
        (Z, Y, X) uint8 labels on the input grid. The input is never modified.
    """
    run = _Run(image, window, stride, batch_size, num_classes, pad_value, tie_priority, backend, voter_factory)
    buffer = run.new_buffer()
    done = 0
    for batch_origins in run.batches():
        run.add(predictor(run.extract(batch_origins, buffer)), batch_origins)
        done += len(batch_origins)
        if progress is not None:
            progress(done, len(run.origins))
    return run.result()


async def sliding_window_inference_async(
    image: np.ndarray,
    predictor: AsyncPredictor,
    *,
    window: int = PATCH_SIZE,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = 8,
    num_classes: int = NUM_CLASSES,
    pad_value: float | None = None,
    tie_priority: Sequence[int] | None = None,
    backend: str = "auto",
    in_flight: int = 2,
    should_stop: Callable[[], bool] | None = None,
    batch_timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    voter_factory: Callable[..., object] | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """:func:`sliding_window_inference` over an ``async`` predictor with ``in_flight`` batches outstanding.

    Batches are submitted in Z-major order and voted in the same order as they complete in turn, so
    the result is identical to the synchronous driver's. Each in-flight batch owns its input buffer
    until its answer has arrived. ``should_stop`` is polled before each submission and after each
    answer; when it returns True the outstanding batches are cancelled and
    :class:`InferenceCancelled` is raised. A batch that takes longer than ``batch_timeout_s`` raises
    :class:`BatchTimeout`. ``timings``, when given, receives seconds spent tiling (``tile_s``), waiting
    for the predictor (``network_wait_s``) and voting (``vote_s``). Other arguments as for
    :func:`sliding_window_inference`.
    """
    in_flight = _check_positive_int(in_flight, "in_flight")
    if batch_timeout_s is not None and not (np.isfinite(batch_timeout_s) and batch_timeout_s > 0):
        raise ValueError(f"batch_timeout_s must be a finite number > 0 or None, got {batch_timeout_s!r}")
    run = _Run(image, window, stride, batch_size, num_classes, pad_value, tie_priority, backend, voter_factory)
    batches = run.batches()
    buffers = [run.new_buffer() for _ in range(min(in_flight, len(batches)))]
    pending: list[tuple[asyncio.Future, np.ndarray]] = []
    done = 0
    clock = {"tile_s": 0.0, "network_wait_s": 0.0, "vote_s": 0.0}

    def stop_requested() -> bool:
        return should_stop is not None and bool(should_stop())

    try:
        for k in range(len(batches) + in_flight):
            if k < len(batches):
                if stop_requested():
                    raise InferenceCancelled(f"stopped after {done} of {len(run.origins)} patches")
                # Buffer k % in_flight was last used by batch k - in_flight, whose answer is in.
                t = time.perf_counter()
                batch = run.extract(batches[k], buffers[k % len(buffers)])
                clock["tile_s"] += time.perf_counter() - t
                pending.append((asyncio.ensure_future(predictor(batch)), batches[k]))
            if len(pending) < in_flight and k < len(batches) - 1:
                continue
            if not pending:
                break
            future, origins = pending.pop(0)
            t = time.perf_counter()
            try:
                out = await asyncio.wait_for(future, batch_timeout_s)
            except asyncio.TimeoutError as exc:
                raise BatchTimeout(f"a batch of {len(origins)} patches took longer than {batch_timeout_s} s") from exc
            t1 = time.perf_counter()
            run.add(out, origins)
            clock["network_wait_s"] += t1 - t
            clock["vote_s"] += time.perf_counter() - t1
            done += len(origins)
            if progress is not None:
                progress(done, len(run.origins))
            if done < len(run.origins) and stop_requested():
                raise InferenceCancelled(f"stopped after {done} of {len(run.origins)} patches")
    finally:
        for future, _ in pending:
            future.cancel()
    t = time.perf_counter()
    labels = run.result()
    clock["vote_s"] += time.perf_counter() - t
    if timings is not None:
        timings.update(clock)
    return labels
