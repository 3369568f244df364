"""A dependency-free loss-curve PNG (Pillow only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def plot_curve(xs: Sequence[float], ys: Sequence[float], path: str | Path, *, title: str = "loss",
               size: tuple[int, int] = (640, 360), smooth: int = 25, xlabel_unit: str = " it") -> Path:
    """Draw ``ys`` against ``xs`` (raw in grey, moving average in blue) with axis extents labelled."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, 15, 25, 30
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    d.text((left, 5), title, fill=(0, 0, 0))
    if len(xs) >= 1:
        x = np.asarray(xs, float)
        y = np.asarray(ys, float)
        x0, x1 = float(x.min()), float(max(x.max(), x.min() + 1))
        y0, y1 = 0.0, float(max(np.nanmax(y), 1e-6)) * 1.05

        def pts(xx, yy):
            px = left + (xx - x0) / (x1 - x0) * (w - left - right)
            py = h - bottom - (yy - y0) / (y1 - y0) * (h - top - bottom)
            return list(zip(px.tolist(), py.tolist(), strict=True))

        if len(x) > 1:
            d.line(pts(x, y), fill=(170, 170, 170), width=1)
            k = max(1, min(smooth, len(y) // 4 or 1))
            # Trailing moving average ('valid'), so the ends are not pulled towards zero.
            avg = np.convolve(y, np.ones(k) / k, mode="valid")
            if len(avg) > 1:
                d.line(pts(x[k - 1 :], avg), fill=(30, 90, 220), width=2)
        d.text((5, top), f"{y1:.3g}", fill=(0, 0, 0))
        d.text((5, h - bottom - 10), "0", fill=(0, 0, 0))
        d.text((left, h - bottom + 5), f"{x0:.3g}", fill=(0, 0, 0))
        d.text((w - right - 60, h - bottom + 5), f"{x1:.3g}{xlabel_unit}", fill=(0, 0, 0))
    path = Path(path)
    img.save(path)
    return path
