"""Majority vote with torch tensors, so label patches that a GPU segmenter left on the device are voted
there (Triton's DLPack path) instead of being copied to the host patch by patch.

Same rule as :class:`s4c.inference.merge.LabelVoter`: each voxel takes the label most covering windows
gave it, ties broken by ``tie_priority`` (first wins). It runs on any torch device; on the CPU the tests
hold it to the numpy voter. Memory on the device: ``num_classes`` bytes per voxel of counts (coverage
below 256, true for 64^3 windows at stride >= 13) plus a transient score slab, and 8 bytes per voxel of
a batch for the vote's flat indices.

A batch is voted with one ``index_add_`` over every voxel of every patch into the flat (class, z, y, x)
counts, a handful of kernel launches per batch whatever its size and the number of classes (a loop
per patch and class would launch about 55,000 kernels for the 4,608 windows of a 512 x 512 x 200 CT).
``add`` returns only once the device has finished with its input: a BLS output's memory is handed
back to Triton's pool when the response object goes, and a kernel still queued would read freed memory.
Not run on a GPU here: the CUDA path is the CPU one on another device, plus that synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s4c.inference.merge import _check_priority, default_tie_priority
from s4c.inference.tiling import max_coverage

#: Z slices decided per argmax pass, bounding the int16 score slab on the device.
_DECODE_SLAB = 16


class TorchLabelVoter:
    """Majority vote over (n, P, P, P) uint8 label tensors on ``device``; ``result()`` is a numpy array."""

    def __init__(self, shape: Sequence[int], window: int, stride: int, *, num_classes: int = 4,
                 tie_priority: Sequence[int] | None = None, device: str | None = None) -> None:
        import torch

        self.torch = torch
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 3 or any(n < window for n in self.shape):
            raise ValueError(f"voter shape {self.shape} must be 3-D with no axis shorter than the window {window}")
        self.window = int(window)
        self.num_classes = int(num_classes)
        priority = _check_priority(tie_priority or default_tie_priority(num_classes), num_classes)
        coverage = max_coverage(self.shape, window, stride)
        if coverage * num_classes + num_classes > np.iinfo(np.int16).max:
            raise ValueError(f"coverage {coverage} is too high for the torch voter; use a larger stride")
        self.device = torch.device(device) if device else None
        count_dtype = torch.uint8 if coverage < 256 else torch.int16
        self._counts = None if self.device is None else torch.zeros(
            (num_classes, *self.shape), dtype=count_dtype, device=self.device)
        self._count_dtype = count_dtype
        self._plane = int(np.prod(self.shape))  # voxels per class in the flat counts
        self._window_offsets = None
        # rank[c]: larger wins a tie; the first class in the priority gets the largest rank.
        rank = np.empty(num_classes, dtype=np.int16)
        rank[priority] = np.arange(num_classes - 1, -1, -1, dtype=np.int16)
        self._rank = rank

    def _ensure(self, device) -> None:
        if self._counts is None:
            self.device = device
            self._counts = self.torch.zeros((self.num_classes, *self.shape), dtype=self._count_dtype, device=device)

    def add(self, patches, origins: np.ndarray) -> None:
        """Add a batch: ``patches`` a uint8 tensor (or array) (n, P, P, P), ``origins`` (n, 3) z, y, x.

        Returns once every kernel reading ``patches`` has finished (see the module docstring)."""
        torch = self.torch
        if isinstance(patches, np.ndarray):
            patches = torch.from_numpy(patches)
        self._ensure(self.device or patches.device)
        p = self.window
        origins = np.asarray(origins, dtype=np.int64)
        if patches.dtype != torch.uint8 or tuple(patches.shape[1:]) != (p, p, p) or len(patches) != len(origins):
            raise ValueError(f"label patches must be uint8 (n, {p}, {p}, {p}) with one origin each, got "
                             f"{patches.dtype} {tuple(patches.shape)} and {len(origins)} origins")
        if len(origins) == 0:
            return
        lo, hi = origins.min(axis=0), origins.max(axis=0) + p
        if (lo < 0).any() or (hi > np.asarray(self.shape)).any():
            raise ValueError(f"window origins {lo.tolist()}..{(hi - p).tolist()} fall outside {self.shape}")
        device = self._counts.device
        patches = patches.to(device)
        if int(patches.max()) >= self.num_classes:
            raise ValueError(f"label patches hold label {int(patches.max())}, outside 0..{self.num_classes - 1}")
        _, ny, nx = self.shape
        base = torch.from_numpy(origins @ np.array([ny * nx, nx, 1], dtype=np.int64)).to(device)
        # flat index of (label, z, y, x) for every voxel of every patch: one add for the whole batch
        index = patches.to(torch.int64) * self._plane + self._offsets(device) + base.view(-1, 1, 1, 1)
        ones = torch.ones(1, dtype=self._count_dtype, device=device).expand(index.numel())
        self._counts.view(-1).index_add_(0, index.view(-1), ones)
        self._finish(device)

    def _offsets(self, device):
        """(P, P, P) int64: flat offset of each window voxel from the window's origin in the volume."""
        if self._window_offsets is None or self._window_offsets.device != device:
            torch = self.torch
            _, ny, nx = self.shape
            r = torch.arange(self.window, dtype=torch.int64, device=device)
            self._window_offsets = (r.view(-1, 1, 1) * (ny * nx) + r.view(1, -1, 1) * nx + r.view(1, 1, -1))
        return self._window_offsets

    def _finish(self, device) -> None:
        """Wait for the stream that runs this voter's kernels (CUDA only; the CPU runs them inline)."""
        if device.type == "cuda":
            self.torch.cuda.current_stream(device).synchronize()

    def result(self) -> np.ndarray:
        """(Z, Y, X) uint8 labels on the host."""
        torch = self.torch
        if self._counts is None:
            raise RuntimeError("no patches were added")
        rank = torch.from_numpy(self._rank).to(self._counts.device).view(-1, 1, 1, 1)
        out = np.empty(self.shape, dtype=np.uint8)
        for z0 in range(0, self.shape[0], _DECODE_SLAB):
            slab = self._counts[:, z0 : z0 + _DECODE_SLAB].to(torch.int16)
            score = slab * self.num_classes + rank
            out[z0 : z0 + _DECODE_SLAB] = score.argmax(dim=0).to(torch.uint8).cpu().numpy()
        return out
