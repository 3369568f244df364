"""PNG rendering of CT slices with label overlays, for people to look at results.

Colours follow the paper's figures: pancreas blue, tumour red, dilated duct green.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

from s4c.components import label_components
from s4c.labels import DUCT, PANCREAS, TUMOR

COLOURS = {PANCREAS: (40, 110, 255), TUMOR: (255, 40, 40), DUCT: (40, 220, 60)}


def window_hu(slice_hu: np.ndarray, lo: float = -160.0, hi: float = 240.0) -> np.ndarray:
    """uint8 grey image of a 2-D HU slice under a [lo, hi] window."""
    x = (np.clip(slice_hu.astype(np.float32), lo, hi) - lo) / (hi - lo)
    return (x * 255 + 0.5).astype(np.uint8)


def overlay(grey: np.ndarray, labels: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a grey slice with labels blended in (outlines drawn opaque)."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if labels is not None:
        for value, colour in COLOURS.items():
            m = labels == value
            if not m.any():
                continue
            rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(colour, np.float32)
            edge = m & ~_erode(m)
            rgb[edge] = colour
    return rgb.astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:] &= m[:-1]
    out[:-1] &= m[1:]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    return out


def radiological_flips(affine: np.ndarray | None) -> tuple[bool, bool]:
    """(flip rows, flip columns) that show an axial (Y, X) slice in radiological convention:
    anterior at the top and the patient's right on the viewer's left."""
    if affine is None:
        return False, False
    codes = nib.orientations.aff2axcodes(affine)  # the direction each voxel axis (i, j, k) points to
    return codes[1] == "A", codes[0] == "R"


def pick_slice(*label_volumes: np.ndarray | None) -> int:
    """Axial (Z) index to show: the slice with most tumour voxels, else most pancreas-set voxels."""
    vols = [v for v in label_volumes if v is not None]
    if not vols:
        raise ValueError("need at least one label volume")
    tumour = sum((v == TUMOR).sum(axis=(1, 2)) for v in vols)
    if tumour.any():
        return int(np.argmax(tumour))
    fg = sum((v > 0).sum(axis=(1, 2)) for v in vols)
    return int(np.argmax(fg)) if fg.any() else vols[0].shape[0] // 2


def _tile(title: str, hu: np.ndarray, lab: np.ndarray | None, spacing_rc: Sequence[float], flip_rows: bool,
          flip_cols: bool, scale: int) -> Image.Image:
    rgb = overlay(window_hu(hu), lab)
    if flip_rows:
        rgb = rgb[::-1]
    if flip_cols:
        rgb = rgb[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(rgb))
    h, w = hu.shape
    sr, sc = spacing_rc
    base = min(sr, sc)
    img = img.resize((max(1, round(w * sc / base * scale)), max(1, round(h * sr / base * scale))), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 18), (0, 0, 0))
    canvas.paste(img, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill=(255, 255, 255))
    return canvas


def _save_row(tiles: Sequence[Image.Image], path: str | Path) -> Path:
    width = sum(t.width for t in tiles) + 4 * (len(tiles) - 1)
    height = max(t.height for t in tiles)
    sheet = Image.new("RGB", (width, height), (0, 0, 0))
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def render_panels(panels: Sequence[tuple[str, np.ndarray, np.ndarray | None]], path: str | Path,
                  spacing_yx: tuple[float, float] = (1.0, 1.0), scale: int = 3,
                  affine: np.ndarray | None = None) -> Path:
    """Write a row of titled panels, each (title, HU slice (Y, X), labels slice (Y, X) or None).

    Panels are resized so that pixels are square in mm (``spacing_yx``) and enlarged ``scale`` times;
    with ``affine`` they are flipped into radiological orientation.
    """
    flip_rows, flip_cols = radiological_flips(affine)
    return _save_row([_tile(t, hu, lab, spacing_yx, flip_rows, flip_cols, scale) for t, hu, lab in panels], path)


def focus_point(labels: np.ndarray) -> tuple[tuple[int, int, int], str]:
    """(z, y, x) to slice through and what it is: the largest tumour's centroid, else the pancreas
    set's centroid, else the volume centre."""
    tumour = labels == TUMOR
    if tumour.any():
        cc, n = label_components(tumour.astype(np.uint8))
        sizes = np.bincount(cc.reshape(-1), minlength=n + 1)
        sizes[0] = 0
        where = np.argwhere(cc == int(np.argmax(sizes)))
        return tuple(int(np.rint(v)) for v in where.mean(axis=0)), "largest tumour"
    fg = np.argwhere(labels > 0)
    if len(fg):
        return tuple(int(np.rint(v)) for v in fg.mean(axis=0)), "pancreas"
    return tuple(n // 2 for n in labels.shape), "centre"


def render_tumour_views(phases: dict[str, tuple[np.ndarray, np.ndarray, Sequence[float]]], path: str | Path,
                        scale: int = 3) -> Path:
    """Axial, coronal and sagittal slices through each phase's largest tumour, labels overlaid.

    ``phases`` maps phase -> (HU (Z, Y, X), labels (Z, Y, X), spacing (Z, Y, X)) on the canonical RAS+
    grid (Z to superior, Y to anterior, X to the patient's right). Views are in radiological
    convention: anterior / superior at the top, the patient's right on the viewer's left.
    """
    tiles = []
    for phase, (hu, labels, spacing) in phases.items():
        (z, y, x), what = focus_point(labels)
        sz, sy, sx = spacing
        tiles += [_tile(f"{phase} axial z={z} ({what})", hu[z], labels[z], (sy, sx), True, True, scale),
                  _tile(f"{phase} coronal y={y}", hu[:, y], labels[:, y], (sz, sx), True, True, scale),
                  _tile(f"{phase} sagittal x={x}", hu[:, :, x], labels[:, :, x], (sz, sy), True, True, scale)]
    return _save_row(tiles, path)


def _framed(size: tuple[int, int], title: str, margins: tuple[int, int, int, int]):
    """A white image of ``size`` with the plot frame inside ``margins`` (left, right, top, bottom) and
    ``title`` above it; returns (image, its drawing context)."""
    w, h = size
    left, right, top, bottom = margins
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    d.text((left, 5), title, fill=(0, 0, 0))
    return img, d


def plot_curve(xs: Sequence[float], ys: Sequence[float], path: str | Path, *, title: str = "loss",
               size: tuple[int, int] = (640, 360), smooth: int = 25, xlabel_unit: str = " it") -> Path:
    """A loss or ROC curve PNG: ``ys`` against ``xs`` (raw in grey, moving average in blue), axis extents
    labelled."""
    w, h = size
    left, right, top, bottom = 60, 15, 25, 30
    img, d = _framed(size, title, (left, right, top, bottom))
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


#: Line colours of :func:`plot_rocs`, one per curve in order.
ROC_COLOURS = ((30, 90, 220), (220, 60, 40), (40, 160, 70), (150, 60, 190), (230, 150, 20), (90, 90, 90))


def plot_rocs(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *,
              title: str = "ROC", size: tuple[int, int] = (520, 520)) -> Path:
    """Several ROC curves in one PNG: ``curves`` maps a legend label to (false-positive rates, true-positive
    rates); x is 1 - specificity, y sensitivity, both 0 to 1, with the chance diagonal."""
    w, h = size
    left, right, top, bottom = 45, 15, 25, 40
    img, d = _framed(size, title, (left, right, top, bottom))

    def pts(xx, yy):
        px = left + np.asarray(xx, float) * (w - left - right)
        py = h - bottom - np.asarray(yy, float) * (h - top - bottom)
        return list(zip(px.tolist(), py.tolist(), strict=True))

    d.line(pts([0, 1], [0, 1]), fill=(200, 200, 200), width=1)
    for i, (label, (fpr, tpr)) in enumerate(curves.items()):
        colour = ROC_COLOURS[i % len(ROC_COLOURS)]
        xy = pts([0.0, *fpr, 1.0], [0.0, *tpr, 1.0])
        d.line(xy, fill=colour, width=2)
        d.text((left + 8, top + 8 + 14 * i), label, fill=colour)
    d.text((5, top), "1", fill=(0, 0, 0))
    d.text((5, h - bottom - 10), "0", fill=(0, 0, 0))
    d.text((left, h - bottom + 5), "0", fill=(0, 0, 0))
    d.text((w - right - 10, h - bottom + 5), "1", fill=(0, 0, 0))
    d.text((left + 60, h - bottom + 20), "x: 1 - specificity, y: sensitivity", fill=(0, 0, 0))
    path = Path(path)
    img.save(path)
    return path
