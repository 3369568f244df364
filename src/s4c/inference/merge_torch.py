"""Majority vote with torch tensors, so label patches that a GPU segmenter left on the device are voted
there (Triton's DLPack path) instead of being copied to the host patch by patch.

Same rule as :class:`s4c.inference.merge.LabelVoter`: each voxel takes the label most covering windows
gave it, ties broken by ``tie_priority`` (first wins). It runs on any torch device; on the CPU the tests
hold it to the numpy voter. Memory on the device: ``num_classes`` bytes per voxel of counts (coverage
below 256, true for 64^3 windows at stride >= 13) plus a transient score slab.
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
        # rank[c]: larger wins a tie; the first class in the priority gets the largest rank.
        rank = np.empty(num_classes, dtype=np.int16)
        rank[priority] = np.arange(num_classes - 1, -1, -1, dtype=np.int16)
        self._rank = rank

    def _ensure(self, device) -> None:
        if self._counts is None:
            self.device = device
            self._counts = self.torch.zeros((self.num_classes, *self.shape), dtype=self._count_dtype, device=device)

    def add(self, patches, origins: np.ndarray) -> None:
        """Add a batch: ``patches`` a uint8 tensor (or array) (n, P, P, P), ``origins`` (n, 3) z, y, x."""
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
        patches = patches.to(self._counts.device)
        if int(patches.max()) >= self.num_classes:
            raise ValueError(f"label patches hold label {int(patches.max())}, outside 0..{self.num_classes - 1}")
        for patch, (z, y, x) in zip(patches, origins.tolist(), strict=True):
            region = self._counts[:, z : z + p, y : y + p, x : x + p]
            for c in range(self.num_classes):
                region[c] += (patch == c).to(self._count_dtype)

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
