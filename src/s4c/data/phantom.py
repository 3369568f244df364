"""Synthetic dual-phase (late-arterial + portal-venous) abdominal CT phantoms with pancreas labels.

Each case is a random patient built in world millimetres as implicit surfaces (signed-distance-like
fields, negative inside) deformed by smooth random noise: body wall with random habitus, spine, ribs,
lung bases, liver, spleen, kidneys, gallbladder, stomach, duodenum, small bowel, colon, the great
vessels and the portal system, and a lobulated pancreas along a random 3-D curve. Abnormal cases add
one pancreatic neuroendocrine tumour (label 2) and, in about 30 % of them, a dilated pancreatic duct
(label 3) upstream of it.

The anatomy is then sampled on the voxel grid twice: once for the arterial phase and once, translated
by a small random rigid shift, for the venous phase, so each label map matches its own image. Tissue
intensities are native HU (calibrated against a real unenhanced CT) plus per-phase contrast uptake,
followed by partial-volume blur and slightly correlated noise.

Conventions: arrays are (Z, Y, X); spacing is (Z, Y, X) mm; the affine is
``affine_from_spacing(spacing)`` (RAS, voxel (0, 0, 0) at the world origin). In anatomy coordinates +X
is the patient's right, +Y anterior and +Z superior, so array index order matches RAS.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline, PchipInterpolator
from scipy.spatial import cKDTree

from s4c.data.cohort import CaseEntry, write_manifest
from s4c.io import affine_from_spacing, save_nifti
from s4c.labels import DUCT, MIN_TUMOR_VOXELS, PANCREAS, TUMOR
from s4c.validation import check_spacing

GENERATOR_VERSION = "1.0"
DEFAULT_SHAPE = (96, 128, 128)
DEFAULT_SPACING = (2.5, 2.5, 2.5)
HU_MIN, HU_MAX = -1024, 3071
PHANTOM_JSON = "phantom.json"
MIN_AXIS = 16

# fmt: off
# Tissue classes of the piecewise-constant model. Labels derive from these, so image and label agree.
_TISSUES = (
    "air", "skin", "subcut_fat", "fat", "muscle", "lung", "bone", "cortical", "disc", "csf", "table",
    "liver", "liver_vessel", "gallbladder", "spleen", "kidney_cortex", "kidney_medulla", "sinus_fat",
    "renal_pelvis", "gi_wall", "gi_fluid", "gas", "stool", "pancreas", "artery", "ivc", "portal",
    "renal_vein", "duct", "tumor", "tumor_core",
)
# fmt: on
_T = {name: i for i, name in enumerate(_TISSUES)}
_N_T = len(_TISSUES)

_LABEL_OF_TISSUE = np.zeros(256, dtype=np.uint8)
_LABEL_OF_TISSUE[_T["pancreas"]] = PANCREAS
_LABEL_OF_TISSUE[_T["tumor"]] = TUMOR
_LABEL_OF_TISSUE[_T["tumor_core"]] = TUMOR
_LABEL_OF_TISSUE[_T["duct"]] = DUCT

# (native HU, arterial uptake, venous uptake, native jitter SD, fine texture, coarse texture).
# Native values follow the real unenhanced CT in shared/data/real-ct (liver 46, spleen 40, kidney 15,
# pancreas 40, aorta 43, muscle 26, fat -100); uptake follows pancreatic-protocol CT.
_HU_MODEL = {
    "air": (-1000, 0, 0, 0, 0, 0),
    "skin": (35, 10, 20, 5, 4, 2),
    "subcut_fat": (-105, 0, 0, 8, 8, 5),
    "fat": (-98, 0, 0, 8, 9, 6),
    "muscle": (26, 20, 30, 5, 4, 3),
    "lung": (-860, 0, 0, 25, 40, 20),
    "bone": (190, 5, 10, 30, 25, 15),
    "cortical": (560, 0, 0, 80, 40, 20),
    "disc": (85, 5, 12, 8, 5, 3),
    "csf": (15, 0, 5, 5, 3, 1),
    "table": (-300, 0, 0, 40, 20, 0),
    "liver": (46, 28, 64, 5, 4, 5),
    "liver_vessel": (40, 15, 135, 5, 4, 2),
    "gallbladder": (10, 0, 0, 6, 3, 1),
    "spleen": (40, 90, 75, 4, 5, 8),
    "kidney_cortex": (15, 175, 150, 6, 6, 3),
    "kidney_medulla": (15, 55, 125, 6, 6, 3),
    "sinus_fat": (-90, 0, 0, 8, 8, 3),
    "renal_pelvis": (8, 0, 0, 4, 3, 1),
    "gi_wall": (35, 75, 65, 6, 8, 4),
    "gi_fluid": (8, 0, 0, 6, 4, 3),
    "gas": (-995, 0, 0, 3, 8, 0),
    "stool": (0, 0, 0, 15, 45, 15),
    "pancreas": (40, 95, 60, 5, 6, 4),
    "artery": (43, 257, 122, 4, 4, 2),
    "ivc": (40, 55, 110, 4, 6, 2),
    "portal": (40, 100, 140, 4, 4, 2),
    "renal_vein": (40, 130, 130, 4, 4, 2),
    "duct": (10, 0, 3, 5, 3, 1),
    "tumor": (40, 95, 60, 0, 6, 3),  # overwritten per case from the pancreas and the tumour contrast
    "tumor_core": (15, 3, 6, 6, 5, 2),
}

# Tissues the tumour may displace: soft tissue around the gland, not solid organs, bone or great vessels.
_TUMOR_ONTO = ("fat", "pancreas", "duct", "portal", "renal_vein", "gi_wall", "gi_fluid", "gas", "muscle")

# Smallest connected piece of dilated duct kept, in voxels.
_MIN_DUCT_PIECE = 10
# Fixed lattice domain of the global texture fields, so texture does not depend on the grid.
_TEX_HALF = np.array([135.0, 140.0, 165.0])
# Variance of a cubic B-spline of iid unit normals, averaged over a cell, is (151/315) per axis.
_BSPLINE_GAIN = (315.0 / 151.0) ** 1.5


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic dual-phase case.

    ``arterial``/``venous`` are int16 HU volumes (Z, Y, X); ``arterial_label``/``venous_label`` are uint8
    (Z, Y, X) maps with 0 background, 1 pancreas, 2 tumour, 3 dilated duct, each matching its own phase.
    ``spacing`` is (Z, Y, X) mm and ``affine`` the NIfTI (i, j, k) -> world matrix. ``meta`` is a
    JSON-serialisable description (tumour size/contrast/visibility, duct, venous shift, HU, habitus).
    """

    case_id: str
    abnormal: bool
    arterial: np.ndarray
    venous: np.ndarray
    arterial_label: np.ndarray
    venous_label: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    meta: dict


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        values = [operator.index(v) for v in shape]
    except TypeError as exc:
        raise ValueError(f"shape must be 3 positive integers (Z, Y, X), got {shape!r}") from exc
    if len(values) != 3 or any(isinstance(v, bool) for v in shape):
        raise ValueError(f"shape must be 3 positive integers (Z, Y, X), got {shape!r}")
    for axis, v in zip("ZYX", values, strict=True):
        if v < MIN_AXIS:
            raise ValueError(f"shape along {axis} must be >= {MIN_AXIS} voxels, got {v} in {tuple(values)}")
    return values[0], values[1], values[2]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError as exc:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}") from exc
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def _seed_sequence(seed) -> np.random.SeedSequence:
    """A private SeedSequence equal in state to ``seed`` (spawning from it never mutates the caller's)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    if isinstance(seed, bool):
        raise ValueError(f"seed must be a non-negative integer or SeedSequence, got {seed!r}")
    try:
        value = operator.index(seed)
    except TypeError as exc:
        raise ValueError(f"seed must be a non-negative integer or SeedSequence, got {seed!r}") from exc
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return np.random.SeedSequence(value)


# --------------------------------------------------------------------------------------------------
# Geometry helpers (all coordinates (Z, Y, X) mm in the anatomy frame)
# --------------------------------------------------------------------------------------------------


def _zyx(x: float, y: float, z: float) -> np.ndarray:
    """Point from anatomical (x right, y anterior, z superior) into (Z, Y, X) order."""
    return np.array([z, y, x], dtype=np.float64)


@dataclass(frozen=True)
class _Grid:
    """Voxel centres of one acquisition in anatomy mm; the anatomy is translated by ``shift``."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    shift: tuple[float, float, float]

    def box(self, lo: np.ndarray, hi: np.ndarray):
        """Index slices and per-axis coordinate vectors of voxels inside [lo, hi], or None if empty."""
        slices, vecs = [], []
        for k in range(3):
            n, sp, sh = self.shape[k], self.spacing[k], self.shift[k]
            off = (n - 1) / 2.0
            i0 = max(0, math.ceil((lo[k] + sh) / sp + off))
            i1 = min(n, math.floor((hi[k] + sh) / sp + off) + 1)
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
            vecs.append(((np.arange(i0, i1) - off) * sp - sh).astype(np.float32))
        return tuple(slices), vecs

    def contains(self, point, margin: float = 0.0) -> bool:
        """Whether an anatomy point lies inside the grid's voxel-centre extent, ``margin`` mm in."""
        for k in range(3):
            half = (self.shape[k] - 1) / 2.0 * self.spacing[k] - margin
            if abs(point[k] + self.shift[k]) > half:
                return False
        return True

    def fov(self) -> tuple[float, float, float]:
        return tuple(float(n * sp) for n, sp in zip(self.shape, self.spacing, strict=True))

    def full(self):
        return self.box(np.full(3, -1e9), np.full(3, 1e9))


def _bspline_axis(a: np.ndarray, axis: int, u: np.ndarray) -> np.ndarray:
    """Evaluate a uniform cubic B-spline with coefficients ``a`` along ``axis`` at lattice coords ``u``."""
    f = np.floor(u)
    t = (u - f).astype(np.float32)
    i = f.astype(np.int64) - 1
    t2, t3 = t * t, t * t * t
    weights = ((1 - t) ** 3 / 6, (3 * t3 - 6 * t2 + 4) / 6, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6)
    shape = [1, 1, 1]
    shape[axis] = -1
    n = a.shape[axis]
    out = None
    for k, w in enumerate(weights):
        term = np.take(a, np.clip(i + k, 0, n - 1), axis=axis) * w.reshape(shape)
        out = term if out is None else out + term
    return out


class _Noise:
    """Smooth random field (std ~1, correlation length ~``pitch`` mm) defined in anatomy mm."""

    def __init__(self, rng: np.random.Generator, lo, hi, pitch: float):
        lo = np.asarray(lo, dtype=np.float64) - 2 * pitch
        hi = np.asarray(hi, dtype=np.float64) + 2 * pitch
        n = np.ceil((hi - lo) / pitch).astype(int) + 1
        self.lo, self.pitch = lo, float(pitch)
        self.vals = (rng.standard_normal(tuple(n)) * _BSPLINE_GAIN).astype(np.float32)

    def box(self, vecs: Sequence[np.ndarray]) -> np.ndarray:
        """Field on the tensor grid ``vecs`` = (z, y, x) coordinate vectors; separable, so cheap."""
        out = self.vals
        for axis in (2, 1, 0):
            out = _bspline_axis(out, axis, (vecs[axis] - self.lo[axis]) / self.pitch)
        return out


def _noise1d(rng: np.random.Generator, n: int, step: float, pitch: float) -> np.ndarray:
    """Smooth 1-D random sequence (std ~1) of ``n`` samples ``step`` mm apart."""
    m = int(np.ceil(n * step / pitch)) + 4
    knots = rng.standard_normal(m)
    u = np.arange(n) * step / pitch + 1.0
    return _bspline_axis(knots.reshape(1, 1, -1), 2, u).ravel().astype(np.float64) * math.sqrt(315 / 151)


class _Curve:
    """A smooth 3-D centreline sampled every ``step`` mm, with a radius per sample and a KD-tree."""

    def __init__(self, pts: np.ndarray, radius: np.ndarray):
        self.pts = np.asarray(pts, dtype=np.float64)
        self.radius = np.asarray(radius, dtype=np.float64)
        self.s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(self.pts, axis=0), axis=1))]
        self.tree = cKDTree(self.pts)

    @classmethod
    def spline(cls, ctrl, radius, step: float = 1.0) -> _Curve:
        """Natural cubic spline through control points (K, 3) with PCHIP-interpolated radii (K,)."""
        ctrl = np.asarray(ctrl, dtype=np.float64)
        t = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))]
        fine_t = np.linspace(0.0, t[-1], max(8, int(t[-1] / step) * 4))
        fine = CubicSpline(t, ctrl, bc_type="natural")(fine_t)
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))]
        s = np.arange(0.0, arc[-1] + 1e-9, step)
        pts = np.stack([np.interp(s, arc, fine[:, k]) for k in range(3)], axis=1)
        r_fine = PchipInterpolator(t, np.asarray(radius, dtype=np.float64))(fine_t)
        return cls(pts, np.interp(s, arc, r_fine))

    @classmethod
    def polyline(cls, pts, radius, step: float = 1.0) -> _Curve:
        """Resample a dense polyline every ``step`` mm."""
        pts = np.asarray(pts, dtype=np.float64)
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        s = np.arange(0.0, arc[-1] + 1e-9, step)
        out = np.stack([np.interp(s, arc, pts[:, k]) for k in range(3)], axis=1)
        return cls(out, np.interp(s, arc, np.broadcast_to(radius, arc.shape)))

    def at(self, s: float) -> np.ndarray:
        return np.array([np.interp(s, self.s, self.pts[:, k]) for k in range(3)])

    def bounds(self, pad: float) -> tuple[np.ndarray, np.ndarray]:
        r = float(self.radius.max()) + pad
        return self.pts.min(axis=0) - r, self.pts.max(axis=0) + r


def _tube(grid: _Grid, curve: _Curve, pad: float = 2.0, noise: _Noise | None = None, amp: float = 0.0,
          prune: bool = True):
    """Field ``distance - radius`` (mm, < 0 inside) of a tube on the voxels near it.

    Returns (slices, field, nearest-sample index, box coordinate vectors), or None when the tube misses
    the grid. Voxels farther than ``max radius + pad`` from the centreline get ``max radius + pad``.
    """
    pad = pad + 3.0 * amp
    b = grid.box(*curve.bounds(pad))
    if b is None:
        return None
    sl, vecs = b
    shape = tuple(len(v) for v in vecs)
    bound = float(curve.radius.max()) + pad
    f = np.full(shape, bound, dtype=np.float32)
    idx = np.zeros(shape, dtype=np.int64)
    if f.size > 20000 and prune:
        # Prune with a coarse lattice: distance is 1-Lipschitz, so a voxel whose nearest lattice node
        # is farther than bound + (node offset) cannot be within bound. The result is exact.
        nodes = [np.unique(np.r_[np.arange(0, n, 3), n - 1]) for n in shape]
        cz, cy, cx = np.meshgrid(*(v[nd] for v, nd in zip(vecs, nodes, strict=True)), indexing="ij")
        dc, _ = curve.tree.query(np.stack([cz.ravel(), cy.ravel(), cx.ravel()], 1),
                                 distance_upper_bound=bound + 4.0 * max(grid.spacing))
        dc = dc.reshape(cz.shape)
        # Nodes are at most 3 voxels apart, so every voxel has one within one voxel per axis.
        near_node = [np.abs(nd[None, :] - np.arange(n)[:, None]).argmin(axis=1)
                     for nd, n in zip(nodes, shape, strict=True)]
        delta = math.sqrt(sum(sp * sp for sp in grid.spacing)) + 1e-3
        cand = dc[np.ix_(*near_node)] < bound + delta
        where = np.nonzero(cand)
    else:
        where = tuple(a.ravel() for a in np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"))
    pts = np.stack([vecs[k][where[k]] for k in range(3)], axis=1)
    d, i = curve.tree.query(pts, distance_upper_bound=bound)
    near = np.isfinite(d)
    i = np.minimum(i, len(curve.pts) - 1)
    f[where] = np.where(near, d - curve.radius[i], bound)
    idx[where] = i
    if noise is not None and amp > 0:
        f += amp * noise.box(vecs)
    return sl, f, idx, vecs


def _rotation(rz: float = 0.0, ry: float = 0.0, rx: float = 0.0) -> np.ndarray:
    """Rotation matrix acting on (Z, Y, X) vectors: about the anatomical z, then y, then x axis (radians)."""

    def rot(i, j, a):
        m = np.eye(3)
        c, s = math.cos(a), math.sin(a)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    # In (Z, Y, X) order: about z mixes (Y, X) = (1, 2); about y mixes (Z, X); about x mixes (Z, Y).
    return rot(1, 2, rz) @ rot(0, 2, ry) @ rot(0, 1, rx)


def _ellipsoid(vecs, centre, radii, rot: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm, < 0 inside) to a rotated ellipsoid on the tensor grid ``vecs``.

    ``rot`` columns are the ellipsoid's local axes in (Z, Y, X); ``radii`` go with those columns.
    """
    d = [vecs[k].reshape([-1 if i == k else 1 for i in range(3)]) - np.float32(centre[k]) for k in range(3)]
    r = np.asarray(radii, dtype=np.float32)
    if rot is None:
        q = [d[k] / r[k] for k in range(3)]
    else:
        rr = rot.astype(np.float32)
        q = [(rr[0, k] * d[0] + rr[1, k] * d[1] + rr[2, k] * d[2]) / r[k] for k in range(3)]
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    grad = np.sqrt((q[0] / r[0]) ** 2 + (q[1] / r[1]) ** 2 + (q[2] / r[2]) ** 2)
    # First-order distance: (rho - 1) / |grad rho|, with |grad rho| = grad / rho.
    return np.broadcast_to((rho - 1) * rho / np.maximum(grad, 1e-6), tuple(len(v) for v in vecs))


def _ellipsoid_box(grid: _Grid, centre, radii, pad: float = 2.0):
    r = float(np.max(radii)) + pad
    return grid.box(np.asarray(centre) - r, np.asarray(centre) + r)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two distance fields (blend radius ``k`` mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


# --------------------------------------------------------------------------------------------------
# Random anatomy (drawn once per case, independent of the grid)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Anatomy:
    p: dict  # scalar and vector parameters
    noise: dict  # _Noise fields by name
    curves: dict  # _Curve objects by name
    gas: dict  # per-curve-sample gas level (fraction of radius above the centreline)
    tumor: dict | None
    duct: dict | None


def _sample_anatomy(rng: np.random.Generator, abnormal: bool) -> _Anatomy:
    """Draw one patient in anatomy mm (x right, y anterior, z superior; points stored (Z, Y, X)).

    Only ``rng`` and ``abnormal`` matter, so the same seed gives the same patient on any grid.
    """
    u = rng.uniform
    p: dict = {}
    nz: dict = {}
    cv: dict = {}
    gas: dict = {}

    # Habitus: half-width a (x), half-depth b (y), subcutaneous fat and muscle wall thickness.
    a = u(125.0, 155.0)
    b = min(a * u(0.72, 0.88), 132.0)
    t_fat = math.exp(u(math.log(7.0), math.log(42.0)))
    t_mus = u(8.0, 13.0)
    y0 = u(-4.0, 10.0)
    p.update(a=a, b=b, t_fat=t_fat, t_mus=t_mus, y0=y0, p_ant=u(2.0, 2.35), p_post=u(2.4, 3.2),
             taper=u(-0.05, 0.06), fat_lat=u(0.0, 0.6))
    a_in, b_in = a - t_fat - t_mus, b - t_fat - t_mus
    p.update(a_in=a_in, b_in=b_in)
    body_lo, body_hi = _zyx(-a - 10, y0 - b - 30, -150), _zyx(a + 10, y0 + b + 10, 150)
    nz["skin"] = _Noise(rng, body_lo, body_hi, 45.0)
    nz["fat"] = _Noise(rng, body_lo, body_hi, 35.0)

    # Spine: vertebral body centre, size and level pattern (discs every ~32 mm).
    vb_y = y0 - b + 0.6 * t_fat + u(55.0, 70.0)
    vb_rx, vb_ry = u(20.0, 25.0), u(15.0, 19.0)
    p.update(vb_y=vb_y, vb_rx=vb_rx, vb_ry=vb_ry, vb_period=u(30.0, 34.0), vb_phase=u(0.0, 34.0),
             canal_r=u(7.5, 9.0), table_gap=u(3.0, 15.0), es_rx=u(28.0, 38.0),
             rib_z=[u(118.0, 132.0) - 28.0 * k + u(-3.0, 3.0) for k in range(6)], rib_drop=u(80.0, 110.0))

    # Great vessels.
    r_ao = u(9.5, 12.5)
    xa = -u(8.0, 18.0)
    ya = vb_y + vb_ry + r_ao + u(1.0, 4.0)
    r_ivc = u(9.0, 12.0)
    x_ivc = u(20.0, 28.0)
    y_ivc = vb_y + vb_ry + r_ivc * 0.7 + u(0.0, 4.0)
    p.update(r_ao=r_ao, xa=xa, ya=ya)
    cv["aorta"] = _Curve.spline([_zyx(xa, ya, -130), _zyx(xa + u(-3, 3), ya + u(-3, 3), 0),
                                 _zyx(xa + u(-4, 4), ya - u(0, 8), 130)], [r_ao * 0.9, r_ao, r_ao * 1.05], 2.0)
    cv["ivc"] = _Curve.spline([_zyx(x_ivc, y_ivc, -130), _zyx(x_ivc + u(-3, 3), y_ivc + u(-2, 4), 0),
                               _zyx(x_ivc + u(0, 8), y_ivc + u(5, 15), 130)], [r_ivc] * 3, 2.0)
    p["ivc_flat"] = u(0.55, 0.8)

    # Lungs: diaphragm dome height.
    p.update(z_dome=u(125.0, 155.0), recess=u(40.0, 75.0))

    # Liver: smooth union of right lobe, left lobe and caudate, clipped by the wall and diaphragm.
    liv_z = u(45.0, 70.0)
    p["liver"] = [
        (_zyx(0.4 * a_in + u(-8, 8), y0 + u(-10, 10), liv_z), (u(80, 105), b_in, 0.75 * a_in)),
        (_zyx(-0.12 * a_in + u(-10, 10), y0 + 0.45 * b_in, liv_z + u(10, 30)),
         (u(35, 50), 0.36 * b_in, u(0.4, 0.6) * a_in)),
        (_zyx(x_ivc - 5, y_ivc + 10, liv_z + 15), (30.0, 20.0, 20.0)),
    ]
    p["liv_low"] = liv_z - u(90.0, 115.0)
    liver_lo, liver_hi = _zyx(-a_in, y0 - b_in, -80), _zyx(a_in, y0 + b_in, 160)
    nz["liver"] = _Noise(rng, liver_lo, liver_hi, 40.0)
    nz["liver_v1"] = _Noise(rng, liver_lo, liver_hi, 22.0)
    nz["liver_v2"] = _Noise(rng, liver_lo, liver_hi, 22.0)
    p["liver_amp"] = u(6.0, 12.0)

    # Gallbladder under the liver.
    p["gb"] = (_zyx(0.35 * a_in + u(-10, 10), y0 + 0.3 * b_in + u(-5, 10), liv_z - u(45, 70)),
               (u(25, 40), u(11, 17), u(11, 17)), _rotation(u(-0.4, 0.4), u(-0.5, 0.5), u(-0.6, -0.2)),
               rng.random() < 0.85)

    # Spleen: posterolateral left.
    ang = math.radians(u(200.0, 225.0))
    sp_c = _zyx(a_in * 0.8 * math.cos(ang), y0 + b_in * 0.72 * math.sin(ang), u(35.0, 60.0))
    p["spleen"] = (sp_c, (u(45, 65), u(22, 30), u(40, 55)), _rotation(ang - math.pi / 2, 0.0, u(-0.3, 0.3)))
    nz["spleen"] = _Noise(rng, sp_c - 90, sp_c + 90, 30.0)

    # Kidneys: left higher than right, upper poles medial, hilum anteromedial.
    kid = []
    z_r = u(-50.0, -28.0)
    for side in (+1, -1):
        cx = side * (vb_rx + u(38.0, 50.0))
        cz = z_r if side > 0 else z_r + u(5.0, 20.0)
        c = _zyx(cx, vb_y + u(-10.0, 5.0), cz)
        rot = _rotation(side * math.radians(u(20, 40)), side * math.radians(u(8, 18)), math.radians(u(-15, 5)))
        radii = (u(48, 58), u(19, 24), u(24, 30))
        kid.append((side, c, radii, rot, u(5.0, 7.5)))
    p["kidneys"] = kid
    nz["kidney"] = _Noise(rng, _zyx(-160, -150, -140), _zyx(160, 150, 60), 9.0)

    # Pancreas: a lobulated tube head (right, by the duodenum) -> neck -> body (over the aorta) -> tail.
    z_p = u(-12.0, 10.0)
    p["liv_med"] = z_p + u(18.0, 32.0)
    tail_tip = sp_c + _zyx(u(22, 35), u(25, 40), 0) + _zyx(0, 0, -u(10, 25))
    tail_tip[0] = min(tail_tip[0], z_p + u(15, 35))
    ctrl = [
        _zyx(xa + u(26, 34), ya + u(3, 10), z_p - u(22, 32)),  # uncinate tip, behind the SMV
        _zyx(xa + u(46, 56), ya + u(16, 26), z_p - u(8, 16)),  # head
        _zyx(xa + u(24, 32), ya + u(34, 42), z_p + u(-3, 3)),  # neck, in front of the confluence
        _zyx(xa + u(-14, -4), ya + u(30, 40), z_p + u(3, 10)),  # body, in front of the aorta/SMA
        0.5 * (_zyx(xa - 8, ya + 34, z_p + 8) + tail_tip) + _zyx(u(-5, 5), u(0, 10), u(-3, 5)),  # tail
        tail_tip,
    ]
    scale = u(0.85, 1.15)
    radii = np.array([u(7, 9), u(13, 16), u(8, 10), u(9, 12), u(9, 11), u(6.5, 8)]) * scale
    panc = _Curve.spline(ctrl, radii, 1.0)
    panc.radius *= 1.0 + 0.12 * _noise1d(rng, len(panc.pts), 1.0, 25.0)
    cv["pancreas"] = panc
    s_ctrl = [float(panc.s[np.argmin(np.linalg.norm(panc.pts - c, axis=1))]) for c in ctrl]
    p.update(z_p=z_p, s_neck=s_ctrl[2], s_body=s_ctrl[3], s_tail=0.5 * (s_ctrl[3] + s_ctrl[4]))
    lo, hi = panc.bounds(40.0)
    nz["panc"] = _Noise(rng, lo, hi, 7.0)
    p.update(panc_amp=u(1.2, 2.4), panc_fat_thr=u(1.3, 2.4))

    # Vessels around the pancreas.
    conf = _zyx(xa + u(20, 26), ya + u(22, 28), z_p + u(0, 5))  # portal/splenic/SMV confluence
    r_pv = u(6.0, 8.0)
    hil = _zyx(0.35 * a_in, ya + u(15, 35), liv_z - u(5, 20))
    cv["portal"] = _Curve.spline([conf, 0.5 * (conf + hil) + _zyx(u(0, 8), u(-5, 5), 0), hil,
                                  hil + _zyx(u(15, 30), u(-15, 0), u(5, 15))], [r_pv, r_pv, r_pv * 0.9, r_pv * 0.7])
    r_smv = u(5.0, 6.5)
    cv["smv"] = _Curve.spline([conf, conf + _zyx(u(-3, 3), u(5, 12), -30), conf + _zyx(u(-8, 8), u(8, 20), -140)],
                              [r_smv, r_smv, r_smv * 0.9])
    # The splenic vein runs in a groove along the back of the body and tail, mostly outside the gland.
    r_sv = u(3.5, 5.0)
    sv_s = np.linspace(p["s_neck"], panc.s[-1] - 8.0, 7)
    sv_pts = [conf] + [panc.at(s) + _zyx(0, -(np.interp(s, panc.s, panc.radius) + r_sv - 1.0), 2.0)
                       for s in sv_s[1:]]
    sv_pts.append(sp_c + _zyx(u(10, 18), u(12, 22), 0))
    cv["splenic_v"] = _Curve.spline(sv_pts, [r_sv] * len(sv_pts))
    sma0 = _zyx(xa + u(-2, 2), ya + r_ao * 0.5, z_p + u(8, 16))
    r_sma = u(3.0, 4.2)
    cv["sma"] = _Curve.spline([sma0, sma0 + _zyx(u(-2, 4), u(12, 18), -8), sma0 + _zyx(u(2, 8), u(18, 26), -30),
                               sma0 + _zyx(u(-5, 10), u(20, 35), -150)], [r_sma] * 4)
    cel0 = _zyx(xa + u(-2, 2), ya + r_ao * 0.5, z_p + u(25, 35))
    cel1 = cel0 + _zyx(u(-3, 3), u(14, 20), u(-5, 3))
    r_sa = u(2.5, 3.2)
    sa_pts = [cel0, cel1]
    for s in np.linspace(p["s_body"], panc.s[-1] - 5.0, 5):
        sa_pts.append(panc.at(s) + _zyx(u(-6, 6), u(-8, 2), np.interp(s, panc.s, panc.radius) + u(2, 8)))
    sa_pts.append(sp_c + _zyx(u(10, 18), u(14, 22), u(5, 10)))
    cv["splenic_a"] = _Curve.spline(sa_pts, [r_sa] * len(sa_pts))
    cv["hepatic_a"] = _Curve.spline([cel1, cel1 + _zyx(u(20, 30), u(0, 8), u(-2, 6)), hil + _zyx(0, u(5, 10), 5)],
                                    [r_sa * 0.9] * 3)
    cv["celiac"] = _Curve.spline([cel0, 0.5 * (cel0 + cel1), cel1], [r_sa * 1.4] * 3)
    for side, c, radii_k, rot, _t in kid:
        hilum = c + rot @ np.array([0.0, 0.35 * radii_k[1], -side * radii_k[2] * 0.9])
        ivc_z = hilum[0] + u(0, 8)
        r_rv = u(4.0, 5.5)
        if side > 0:
            rv = [hilum, hilum + _zyx(-10, 2, 2), _zyx(x_ivc, y_ivc, ivc_z)]
        else:
            rv = [hilum, _zyx(xa - r_ao - 8, ya + r_ao * 0.6, ivc_z), _zyx(xa, ya + r_ao + r_rv * 0.7, ivc_z),
                  _zyx(x_ivc, y_ivc, ivc_z)]
        cv[f"renal_v{side}"] = _Curve.spline(rv, [r_rv] * len(rv))
        ra0 = _zyx(xa + side * r_ao * 0.7, ya - 2, hilum[0] + u(4, 10))
        cv[f"renal_a{side}"] = _Curve.spline([ra0, 0.5 * (ra0 + hilum) + _zyx(0, -6, 0), hilum + _zyx(0, -4, 2)],
                                             [u(2.5, 3.2)] * 3)

    # Stomach: fundus high and posterior, body, antrum anterior, pylorus right of midline.
    dist = u(0.75, 1.15)
    pylorus = _zyx(0.2 * a_in + u(-5, 10), ya + u(40, 55), z_p + u(15, 30))
    st = [_zyx(-0.45 * a_in, y0 - 0.05 * b_in, u(95, 115)), _zyx(-0.4 * a_in, y0 + 0.3 * b_in, u(50, 70)),
          _zyx(-0.05 * a_in, y0 + 0.6 * b_in, z_p + u(20, 40)), pylorus]
    cv["stomach"] = _Curve.spline(st, np.array([40.0, 32.0, 20.0, 10.0]) * dist, 2.0)
    lo, hi = cv["stomach"].bounds(20.0)
    nz["stomach"] = _Noise(rng, lo, hi, 15.0)
    p["stomach_gas_y"] = y0 + b_in * u(0.15, 0.75)

    # Duodenum: C-loop around the pancreatic head, third part between aorta and SMA.
    head = ctrl[1]
    duo = [pylorus, pylorus + _zyx(u(15, 25), u(-15, -5), 5),
           _zyx(head[2] + u(24, 30), head[1] + u(-4, 6), z_p + u(0, 10)),
           _zyx(head[2] + u(22, 28), head[1] + u(-8, 0), z_p - u(30, 40)),
           _zyx(head[2] + u(0, 8), head[1] - u(0, 6), z_p - u(48, 58)),
           _zyx(xa + u(0, 10), ya + r_ao + 9, z_p - u(50, 60)),
           _zyx(xa - u(22, 30), ya + u(10, 20), z_p - u(35, 45)),
           _zyx(xa - u(30, 40), ya + u(20, 30), z_p - u(15, 25))]
    r_d = u(9.0, 12.0)
    cv["duodenum"] = _Curve.spline(duo, [r_d * 0.9, r_d * 1.1, r_d, r_d, r_d * 0.9, 8.0, r_d * 0.9, r_d], 1.5)
    gas["duodenum"] = 0.6 + 0.6 * _noise1d(rng, len(cv["duodenum"].pts), 1.5, 40.0)

    # Small bowel: a random walk packed into the lower abdomen, starting at the duodenojejunal flexure.
    region_lo = _zyx(-a_in + 45, ya + 5, -140)
    region_hi = _zyx(a_in - 45, y0 + b_in - 10, z_p - 25)
    walk = _random_walk(rng, duo[-1], region_lo, region_hi, u(2500, 3500), 3.0)
    r_sb = u(9.0, 13.0)
    cv["small_bowel"] = _Curve.polyline(walk, r_sb * (1 + 0.1 * _noise1d(rng, len(walk), 3.0, 60.0)), 2.0)
    gas["small_bowel"] = 1.0 + 0.5 * _noise1d(rng, len(cv["small_bowel"].pts), 2.0, 80.0)

    # Colon: ascending (right flank), transverse (anterior, sagging), descending (left flank).
    r_c = u(18.0, 25.0)
    colon = [_zyx(a_in - r_c - 3, y0 + u(-20, 10), -150), _zyx(a_in - r_c - 3, y0 + u(-10, 15), -60),
             _zyx(0.6 * a_in, y0 + 0.45 * b_in, z_p - u(10, 30)), _zyx(0.0, y0 + b_in - r_c - 5, z_p - u(40, 80)),
             _zyx(-0.6 * a_in, y0 + 0.3 * b_in, z_p + u(0, 25)), _zyx(-a_in + r_c * 0.8 + 3, y0 - 0.2 * b_in,
                                                                    z_p + u(5, 30)),
             _zyx(-a_in + r_c * 0.8 + 3, y0 + u(-30, 0), -60), _zyx(-a_in + r_c * 0.8 + 5, y0 + u(-20, 10), -150)]
    colon_r = [r_c * 1.15, r_c * 1.1, r_c, r_c, r_c * 0.9, r_c * 0.8, r_c * 0.75, r_c * 0.75]
    c_curve = _Curve.spline(colon, colon_r, 2.0)
    c_curve.radius *= 1 + 0.13 * np.cos(2 * np.pi * c_curve.s / u(20, 28)) * (rng.random() < 0.8)
    cv["colon"] = c_curve
    gas["colon"] = 0.55 + 0.5 * _noise1d(rng, len(c_curve.pts), 2.0, 60.0)

    # Per-case texture fields (anatomy mm, fixed lattice) and the contrast/HU table.
    nz["tex_fine"] = _Noise(rng, -_TEX_HALF, _TEX_HALF, 3.0)
    nz["tex_coarse"] = _Noise(rng, -_TEX_HALF, _TEX_HALF, 14.0)
    p["hu"] = _sample_hu(rng)

    tumor = duct = None
    if abnormal:
        tumor, duct = _sample_tumor(rng, panc)
        p["hu"][:, _T["tumor"]] = p["hu"][:, _T["pancreas"]] + np.asarray(tumor["contrast"])
    return _Anatomy(p=p, noise=nz, curves=cv, gas=gas, tumor=tumor, duct=duct)


def _random_walk(rng: np.random.Generator, start, lo, hi, length: float, step: float) -> np.ndarray:
    """Smooth wandering path of ``length`` mm that stays inside the box [lo, hi] (Z, Y, X)."""
    n = int(length / step)
    kicks = rng.normal(0.0, 0.45, (n, 3))
    centre = 0.5 * (np.asarray(lo) + np.asarray(hi))
    margin = 0.18 * (np.asarray(hi) - np.asarray(lo))
    pts = np.empty((n, 3))
    pos = np.clip(np.asarray(start, dtype=np.float64), lo, hi)
    d = centre - pos
    d /= np.linalg.norm(d) + 1e-9
    for k in range(n):
        d = d + kicks[k]
        outside = (pos < lo + margin) | (pos > hi - margin)
        d = d + 0.8 * outside * np.sign(centre - pos)
        d /= np.linalg.norm(d) + 1e-9
        pos = pos + step * d
        pts[k] = pos
    return pts


def _sample_hu(rng: np.random.Generator) -> np.ndarray:
    """Per-case (2, n_tissues) HU table: native + uptake scaled by a per-case bolus factor, jittered."""
    g = (rng.uniform(0.85, 1.15), rng.uniform(0.88, 1.12))
    hu = np.zeros((2, _N_T), dtype=np.float64)
    for name, (native, up_a, up_v, sd, _f, _c) in _HU_MODEL.items():
        base = native + rng.normal(0.0, sd) if sd else native
        j = rng.normal(1.0, 0.07, 2)
        hu[0, _T[name]] = base + up_a * g[0] * j[0]
        hu[1, _T[name]] = base + up_v * g[1] * j[1]
    return hu


def _sample_tumor(rng: np.random.Generator, panc: _Curve) -> tuple[dict, dict | None]:
    """Tumour geometry/contrast and, for ~30 % of cases, the dilated duct upstream (towards the tail).

    The tumour sits at arc length ``s`` along the pancreas centreline, offset from it by up to 0.6 of
    the local gland radius (so large ones are exophytic). Its shape noise is in tumour-local mm.
    """
    u = rng.uniform
    length = float(panc.s[-1])
    duct_present = bool(rng.random() < 0.3)
    s_t = u(0.05, 0.7 if duct_present else 0.95) * length
    offset = rng.normal(size=3)
    offset *= u(0.0, 0.6) / (np.linalg.norm(offset) + 1e-9)
    diameter = math.exp(u(math.log(10.0), math.log(50.0)))
    aspect = np.exp(rng.normal(0.0, 0.12, 3))
    aspect /= np.prod(aspect) ** (1 / 3)
    kind = rng.random()
    if kind < 0.15:
        pattern = "venous_only"
        contrast = (u(-5.0, 5.0), float(rng.choice([-1.0, 1.0], p=[0.7, 0.3])) * u(25.0, 45.0))
    elif kind < 0.30:
        pattern = "arterial_only"
        contrast = (u(40.0, 100.0), u(-5.0, 5.0))
    else:
        pattern = "typical"
        contrast = (u(40.0, 100.0), u(-10.0, 30.0))
    cystic = bool(pattern == "typical" and diameter > 16 and rng.random() < 0.3)
    tumor = dict(s=s_t, offset=offset, diameter=diameter, radii=0.5 * diameter * aspect,
                 rot=_rotation(*u(-math.pi, math.pi, 3)), amp=u(0.06, 0.14), contrast=contrast,
                 pattern=pattern, cystic=cystic, core_frac=u(0.35, 0.65))
    pitch = max(4.0, 0.35 * diameter)
    tumor["noise"] = _Noise(rng, np.full(3, -90.0), np.full(3, 90.0), pitch)
    tumor["core_noise"] = _Noise(rng, np.full(3, -90.0), np.full(3, 90.0), 5.0)
    duct = dict(radius=0.5 * u(3.0, 6.0), end_margin=u(6.0, 12.0)) if duct_present else None
    return tumor, duct


def _tumor_centre(panc: _Curve, tumor: dict, s_t: float) -> np.ndarray:
    r_loc = float(np.interp(s_t, panc.s, panc.radius))
    return panc.at(s_t) + tumor["offset"] * r_loc


def _duct_curve(panc: _Curve, duct: dict | None, s_t: float) -> _Curve | None:
    """Centreline of the dilated duct from the tumour to near the tail tip, or None if too short."""
    if duct is None:
        return None
    seg = (panc.s >= s_t) & (panc.s <= panc.s[-1] - duct["end_margin"])
    if seg.sum() < 10:
        return None
    return _Curve(panc.pts[seg], np.full(int(seg.sum()), duct["radius"]))


def _location(p: dict, s_t: float) -> str:
    return "head" if s_t < p["s_neck"] else ("body" if s_t < p["s_tail"] else "tail")


# --------------------------------------------------------------------------------------------------
# Rasterisation: anatomy -> tissue map on one acquisition grid
# --------------------------------------------------------------------------------------------------


def _paint(tissue: np.ndarray, sl, mask: np.ndarray, name: str, onto: Sequence[str] | None = None) -> None:
    view = tissue[sl]
    if onto is not None:
        allowed = np.zeros(256, dtype=bool)
        allowed[[_T[n] for n in onto]] = True
        mask = mask & allowed[view]
    view[mask] = _T[name]


def _paint_gi(tissue, grid, curve, gas_level, wall, cavity, stool_tex=None, noise=None, amp=0.0,
              gas_y=None) -> None:
    """Hollow viscus: enhancing wall, fluid (or stool) lumen, gas above an air-fluid level (supine: +Y)."""
    res = _tube(grid, curve, 2.0, noise, amp)
    if res is None:
        return
    sl, f, idx, vecs = res
    inside = (f < 0) & (cavity[sl] < 0)
    lumen = inside & (f < -wall)
    dy = vecs[1][None, :, None] - curve.pts[idx, 1]
    if gas_y is not None:
        gas = lumen & (vecs[1][None, :, None] > gas_y)
    else:
        gas = lumen & (dy > gas_level[idx] * curve.radius[idx])
    _paint(tissue, sl, inside, "gi_wall")
    if stool_tex is not None:
        _paint(tissue, sl, lumen, "stool")
        _paint(tissue, sl, lumen & (stool_tex[sl] > 1.3), "gas")
    else:
        _paint(tissue, sl, lumen, "gi_fluid")
    _paint(tissue, sl, gas, "gas")


def _body(grid: _Grid, an: _Anatomy):
    """Full-grid fields: skin distance (mm), cavity distance (mm, < 0 inside the muscle wall), tissue."""
    p = an.p
    _sl, vecs = grid.full()
    z = vecs[0][:, None, None]
    y = vecs[1][None, :, None]
    x = vecs[2][None, None, :]
    taper = 1.0 + p["taper"] * z / 120.0
    a, b = p["a"] * taper, p["b"] * taper
    yy = y - p["y0"]
    pexp = np.where(yy > 0, p["p_ant"], p["p_post"]).astype(np.float32)
    ux, uy = np.abs(x) / a, np.abs(yy) / b
    ux, uy = np.maximum(ux, 1e-6), np.maximum(uy, 1e-6)
    sx, sy = ux**pexp, uy**pexp
    r = (sx + sy) ** (1.0 / pexp)
    # |grad r| for the superellipse r = (|x/a|^p + |y/b|^p)^(1/p).
    g = r ** (1 - pexp) * np.sqrt((sx / ux / a) ** 2 + (sy / uy / b) ** 2)
    skin = (r - 1.0) / np.maximum(g, 1e-6) + 6.0 * an.noise["skin"].box(vecs)
    # Fat is thicker laterally for some habitus and varies smoothly.
    lat = np.abs(x) / (np.abs(x) + np.abs(yy) + 1e-3)
    ant = np.clip(yy / b, 0.0, 1.0)
    post = np.clip(-yy / b, 0.0, 1.0)
    # Fat is thicker anteriorly (and laterally for some habitus) than over the back, and varies smoothly.
    fat = p["t_fat"] * (1.0 + p["fat_lat"] * (lat - 0.5) + 0.3 * ant - 0.4 * post)
    fat = np.maximum(fat * (1.0 + 0.25 * an.noise["fat"].box(vecs)), 3.0)
    mus = p["t_mus"] * (1.0 + 0.5 * ant)  # rectus is thicker than the obliques
    cavity = skin + fat + mus
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    tissue[skin < 0] = _T["skin"]
    tissue[skin < -2.0] = _T["subcut_fat"]
    tissue[skin < -fat] = _T["muscle"]
    # Linea alba: a thin tendinous gap between the recti.
    tissue[(skin < -fat) & (np.abs(x) < 4.0) & (ant > 0.5) & (cavity > 0)] = _T["skin"]
    tissue[cavity < 0] = _T["fat"]
    # Table: curved carbon plate under the back.
    ytab = p["y0"] - p["b"] - p["table_gap"] + 0.0015 * x**2
    tab = (np.abs(y - ytab) < 3.0) & (np.abs(x) < 230) & (skin > 0)
    tissue[np.broadcast_to(tab, grid.shape)] = _T["table"]
    return skin, cavity, tissue


def _rasterise(an: _Anatomy, grid: _Grid, tex: dict) -> np.ndarray:
    """Tissue map (Z, Y, X) uint8 of everything but the tumour."""
    p, cv, nz = an.p, an.curves, an.noise
    skin, cavity, tissue = _body(grid, an)
    _full_sl, full_vecs = grid.full()
    z = full_vecs[0][:, None, None]
    y = full_vecs[1][None, :, None]
    x = full_vecs[2][None, None, :]
    shape = grid.shape

    # Muscles around the spine: erector spinae, psoas (growing inferiorly), quadratus lumborum.
    vb_y, rx, ry = p["vb_y"], p["vb_rx"], p["vb_ry"]
    canal_y = vb_y - ry - p["canal_r"] - 2.0
    for side in (1, -1):
        # Erector spinae fill the space between the posterior fat and the transverse processes.
        back = p["y0"] - p["b"] + p["t_fat"]
        es_ry = 0.5 * (canal_y + 6 - back) + 6.0
        es = ((x - side * (0.85 * p["es_rx"] + 4)) / p["es_rx"]) ** 2 + ((y - (back + es_ry - 8)) / es_ry) ** 2 < 1
        tissue[np.broadcast_to(es, shape) & (skin < -p["t_fat"])] = _T["muscle"]
        pr = np.clip(5.0 + 0.25 * (p["z_p"] + 15 - z), 0.0, 24.0)
        ps = ((x - side * (rx - 2 + pr)) / np.maximum(pr, 0.1)) ** 2 + ((y - vb_y - 2) / np.maximum(0.8 * pr, 0.1)) ** 2
        tissue[np.broadcast_to((ps < 1) & (pr > 1), shape)] = _T["muscle"]
        ql = np.clip(0.2 * (p["z_p"] + 30 - z), 0.0, 1.0)
        qs = ((x - side * (rx + 50)) / 20.0) ** 2 + ((y - vb_y + 28) / 10.0) ** 2 < ql
        tissue[np.broadcast_to(qs, shape) & (cavity < 5)] = _T["muscle"]

    # Lung bases above the diaphragm, lateral to the mediastinum.
    zd = (p["z_dome"] - 25.0 * ((np.abs(x) - 0.45 * p["a_in"]) / (0.55 * p["a_in"])) ** 2
          - p["recess"] * np.clip(-(y - p["y0"]) / p["b_in"], 0, 1) ** 2)
    lung = (z > zd) & (cavity < -2) & (np.abs(x) > 30)
    tissue[lung] = _T["lung"]

    # Ribs: oblique rings just inside the muscle wall, descending steeply anteriorly, so an axial slice
    # cuts each one into a short oval; the lowest ones are short (floating ribs).
    band = (cavity > -8) & (cavity < 8) & (skin < -p["t_fat"]) & (z > -40)
    if band.any():
        idx = np.nonzero(band)
        xs, ys, zs = x[0, 0, idx[2]], y[0, idx[1], 0], z[idx[0], 0, 0]
        phi = np.arctan2(ys - p["y0"], np.abs(xs)) + math.pi / 2  # 0 posterior .. pi anterior
        depth = cavity[idx]
        q = np.full(xs.shape, 9.0, dtype=np.float32)
        for z0, reach in zip(p["rib_z"], (0.8, 0.8, 0.75, 0.65, 0.5, 0.3), strict=True):
            zc = z0 - p["rib_drop"] * phi / math.pi
            on = (phi > 0.12 * math.pi) & (phi < reach * math.pi)
            q = np.where(on, np.minimum(q, ((zs - zc) / 5.5) ** 2 + ((depth - 1.0) / 4.5) ** 2), q)
        tissue[tuple(i[q < 1.0] for i in idx)] = _T["bone"]
        tissue[tuple(i[(q < 1.0) & (q > 0.4)] for i in idx)] = _T["cortical"]

    # Spine: vertebral bodies (cancellous, cortical shell, end plates), discs, canal, posterior elements.
    per, ph = p["vb_period"], p["vb_phase"]
    lvl = np.mod(z - ph, per)
    disc_z = lvl < 7.0
    plate_z = (lvl < 9.0) | (lvl > per - 2.0)
    vb = ((x / rx) ** 2 + ((y - vb_y) / ry) ** 2)
    in_vb = vb < 1.0
    shell = vb > (1 - 1.5 / ry) ** 2
    tissue[np.broadcast_to(in_vb, shape)] = _T["bone"]
    tissue[np.broadcast_to(in_vb & (shell | plate_z), shape)] = _T["cortical"]
    tissue[np.broadcast_to(in_vb & disc_z, shape)] = _T["disc"]
    rc = p["canal_r"]
    rr = np.sqrt(x**2 + (y - canal_y) ** 2)
    mid = np.abs(lvl - 0.5 * per - 3) < 0.32 * per  # posterior elements are in the middle of a level
    arch = (rr < rc + 6.0) & (y < canal_y + 3.0) & mid
    spin = (np.abs(x) < 4.5) & (y < canal_y - rc) & (y > canal_y - rc - 34.0) & (np.abs(lvl - 0.5 * per) < 6)
    trans = (np.abs(x) > rc) & (np.abs(x) < rx + 22.0) & (np.abs(y - canal_y - 3) < 4.0) & (
        np.abs(lvl - 0.5 * per) < 4) & (z < p["z_p"] + 30)
    tissue[np.broadcast_to(arch | spin | trans, shape)] = _T["cortical"]
    tissue[np.broadcast_to((rr < rc) & (y < canal_y + rc), shape)] = _T["csf"]

    # Liver, clipped to the cavity and below the diaphragm.
    b_ = grid.box(_zyx(-p["a"], p["y0"] - p["b"], -100), _zyx(p["a"], p["y0"] + p["b"], 170))
    if b_ is not None:
        sl, vecs = b_
        f = None
        for c, r in p["liver"]:
            e = _ellipsoid(vecs, c, r)
            f = e if f is None else _smin(f, e, 18.0)
        # Deform the free (visceral) surfaces but not where the liver lies against the wall.
        lnoise = p["liver_amp"] * nz["liver"].box(vecs)
        f = f + lnoise * np.clip(-cavity[sl] / 25.0, 0.0, 1.0)
        f = np.maximum(f, cavity[sl] + 1.0)
        f = np.maximum(f, vecs[0][:, None, None] - _zd_box(zd, sl) + 3.0)
        # Inferior surface: the right lobe reaches low laterally; medially it stops above the pancreas.
        # Iso-lines are arcs around the posterolateral corner, so the tip is a crescent against the wall.
        xb, yb = vecs[2][None, None, :], vecs[1][None, :, None]
        w = np.sqrt(((p["a_in"] - xb) / (0.6 * p["a_in"])) ** 2
                    + ((yb - p["y0"] + 0.25 * p["b_in"]) / (0.95 * p["b_in"])) ** 2)
        z_cut = p["liv_low"] + (p["liv_med"] - p["liv_low"]) * np.clip(w, 0.0, 1.0) ** 1.5
        f = np.maximum(f, z_cut - vecs[0][:, None, None] + 0.8 * lnoise)
        liver = f < 0
        _paint(tissue, sl, liver, "liver", onto=("fat", "muscle", "lung"))
        v = (np.abs(nz["liver_v1"].box(vecs)) < 0.22) & (np.abs(nz["liver_v2"].box(vecs)) < 0.22) & (f < -4)
        _paint(tissue, sl, v, "liver_vessel", onto=("liver",))

    # Gallbladder.
    c, r, rot, present = p["gb"]
    b_ = _ellipsoid_box(grid, c, r)
    if present and b_ is not None:
        sl, vecs = b_
        f = _ellipsoid(vecs, c, r, rot)
        _paint(tissue, sl, (f < 0) & (cavity[sl] < 0), "gi_wall")
        _paint(tissue, sl, (f < -2.0) & (cavity[sl] < 0), "gallbladder")

    # Spleen.
    c, r, rot = p["spleen"]
    b_ = _ellipsoid_box(grid, c, r, 12.0)
    if b_ is not None:
        sl, vecs = b_
        f = _ellipsoid(vecs, c, r, rot) + 5.0 * nz["spleen"].box(vecs) * np.clip(-cavity[sl] / 15.0, 0.0, 1.0)
        hil = _ellipsoid(vecs, c + rot[:, 1] * r[1] * 1.3, (r[0] * 0.5, r[1] * 0.6, r[2] * 0.35), rot)
        f = np.maximum(np.maximum(f, -hil), cavity[sl] + 1.0)
        _paint(tissue, sl, f < 0, "spleen", onto=("fat", "muscle", "lung", "liver", "liver_vessel"))

    # Kidneys: cortex shell (irregular inner border = pyramids), medulla, sinus fat, pelvis.
    for side, c, r, rot, t_c in p["kidneys"]:
        b_ = _ellipsoid_box(grid, c, r, 6.0)
        if b_ is None:
            continue
        sl, vecs = b_
        f = _ellipsoid(vecs, c, r, rot) + 1.5 * nz["kidney"].box(vecs)
        med = -side * rot[:, 2]  # unit vector towards the hilum side (medial)
        hc = c + med * r[2] * 0.55 + rot[:, 1] * r[1] * 0.2
        sinus = _ellipsoid(vecs, hc, (r[0] * 0.55, r[1] * 0.5, r[2] * 0.55), rot)
        pelvis = _ellipsoid(vecs, hc + med * 4.0, (r[0] * 0.25, r[1] * 0.3, r[2] * 0.3), rot)
        kid = f < 0
        _paint(tissue, sl, kid, "kidney_cortex")
        ctex = nz["kidney"].box(vecs)
        _paint(tissue, sl, kid & (f < -t_c * (1.0 + 0.45 * ctex)), "kidney_medulla")
        _paint(tissue, sl, kid & (sinus < 0) & (f < -1.0), "sinus_fat")
        _paint(tissue, sl, (pelvis < 0) & (f < -2.0), "renal_pelvis")

    # Stomach with an air-fluid level.
    _paint_gi(tissue, grid, cv["stomach"], None, 4.0, cavity, noise=nz["stomach"], amp=4.0,
              gas_y=p["stomach_gas_y"])
    # Small bowel and colon.
    _paint_gi(tissue, grid, cv["small_bowel"], an.gas["small_bowel"], 2.0, cavity)
    _paint_gi(tissue, grid, cv["colon"], an.gas["colon"], 2.5, cavity, stool_tex=tex["fine"])

    # Pancreas: lobulated tube; the duodenum and vessels are painted after it and carve their grooves.
    res = _tube(grid, cv["pancreas"], 2.0, nz["panc"], p["panc_amp"])
    if res is not None:
        sl, f, _idx, _vecs = res
        _paint(tissue, sl, (f < 0) & (cavity[sl] < 0), "pancreas")
    _paint_gi(tissue, grid, cv["duodenum"], an.gas["duodenum"], 2.0, cavity)

    # Vessels.
    for name, t in (("aorta", "artery"), ("sma", "artery"), ("celiac", "artery"), ("splenic_a", "artery"),
                    ("hepatic_a", "artery"), ("renal_a1", "artery"), ("renal_a-1", "artery"),
                    ("portal", "portal"), ("smv", "portal"), ("splenic_v", "portal"),
                    ("renal_v1", "renal_vein"), ("renal_v-1", "renal_vein")):
        res = _tube(grid, cv[name], 1.0)
        if res is not None:
            sl, f, _idx, _vecs = res
            _paint(tissue, sl, f < 0, t)
    # IVC is flattened antero-posteriorly.
    res = _tube_ellipse(grid, cv["ivc"], p["ivc_flat"])
    if res is not None:
        sl, m = res
        _paint(tissue, sl, m, "ivc")

    return tissue


def _zd_box(zd: np.ndarray, sl) -> np.ndarray:
    """The (1, Y, X) diaphragm-height field restricted to a box's Y/X slices."""
    return zd[:, sl[1], sl[2]] if zd.ndim == 3 else zd


def _tube_ellipse(grid: _Grid, curve: _Curve, flat: float):
    """Mask of a tube whose cross-section is squashed to ``flat`` times its radius along Y."""
    b_ = grid.box(*curve.bounds(2.0))
    if b_ is None:
        return None
    sl, vecs = b_
    zc = vecs[0]
    cy = np.interp(zc, curve.pts[:, 0], curve.pts[:, 1])[:, None, None]
    cx = np.interp(zc, curve.pts[:, 0], curve.pts[:, 2])[:, None, None]
    r = np.interp(zc, curve.pts[:, 0], curve.radius)[:, None, None]
    y = vecs[1][None, :, None]
    x = vecs[2][None, None, :]
    return sl, ((x - cx) / r) ** 2 + ((y - cy) / (r * flat)) ** 2 < 1.0


def _paint_lesions(base: np.ndarray, grid: _Grid, tumor: dict, centre: np.ndarray, duct: _Curve | None,
                   grow: float) -> tuple[np.ndarray, int]:
    """Copy of ``base`` with the dilated duct and the tumour painted; returns it and the tumour voxels.

    Tumour voxels outside the largest pancreas-set component (cut off by a vessel) are dropped.
    """
    tissue = base.copy()
    if duct is not None:
        # A duct narrower than a voxel would vanish on coarse grids; keep it resolvable.
        r_eff = max(float(duct.radius[0]), 0.9 * max(grid.spacing))
        res = _tube(grid, _Curve(duct.pts, np.full(len(duct.pts), r_eff)), 1.0)
        if res is not None:
            sl, f, _idx, _vecs = res
            _paint(tissue, sl, f < 0, "duct", onto=("pancreas",))
            # Crumbs of duct (where the gland is cut by the field of view or a vessel) are dropped.
            view = tissue[sl]
            cc = cc3d.connected_components(view == _T["duct"], connectivity=26)
            small = np.bincount(cc.ravel()) < _MIN_DUCT_PIECE
            small[0] = False
            view[small[cc]] = _T["pancreas"]
    radii = tumor["radii"] * grow
    b_ = _ellipsoid_box(grid, centre, radii, 3.0 + 3 * tumor["amp"] * radii.max())
    if b_ is None:
        return tissue, 0
    sl, vecs = b_
    local = [v - np.float32(c) for v, c in zip(vecs, centre, strict=True)]
    f = _ellipsoid(vecs, centre, radii, tumor["rot"]) + tumor["amp"] * radii.max() * tumor["noise"].box(local)
    _paint(tissue, sl, f < 0, "tumor", onto=_TUMOR_ONTO)
    if tumor["cystic"]:
        core = _ellipsoid(vecs, centre, radii * tumor["core_frac"], tumor["rot"]) + 1.5 * tumor["core_noise"].box(local)
        _paint(tissue, sl, core < 0, "tumor_core", onto=("tumor",))
    label = _LABEL_OF_TISSUE[tissue]
    cc = cc3d.connected_components(label > 0, connectivity=26)
    counts = np.bincount(cc.ravel())
    counts[0] = 0
    main = cc == int(np.argmax(counts))
    is_tumor = label == TUMOR
    stray = is_tumor & ~main
    tissue[stray] = base[stray]
    return tissue, int(np.count_nonzero(is_tumor & main))


def _place_lesions(an: _Anatomy, grids: Sequence[_Grid], bases: Sequence[np.ndarray],
                   rng: np.random.Generator) -> tuple[list[np.ndarray], dict]:
    """Paint tumour (and duct) into every phase, growing the tumour until it has >= 40 voxels in each.

    If the drawn position is outside a cropped field of view (or cannot reach the minimum size there),
    the tumour is moved along the part of the gland that the grid does contain.
    """
    panc, tu = an.curves["pancreas"], an.tumor
    s_t = float(tu["s"])
    for attempt in range(8):
        centre = _tumor_centre(panc, tu, s_t)
        duct = _duct_curve(panc, an.duct, s_t)
        if all(g.contains(centre) for g in grids):
            grow = 1.0
            for _ in range(30):
                painted = [_paint_lesions(b, g, tu, centre, duct, grow) for b, g in zip(bases, grids, strict=True)]
                if min(n for _t, n in painted) >= MIN_TUMOR_VOXELS:
                    meta = {
                        "location": _location(an.p, s_t),
                        "diameter_mm": float(tu["diameter"] * grow),
                        "nominal_diameter_mm": float(tu["diameter"]),
                        "grown": float(grow),
                        "relocated": attempt > 0,
                        "centre_zyx_mm": [float(v) for v in centre],
                        "voxels": {"arterial": painted[0][1], "venous": painted[1][1]},
                        "duct_length_mm": float(duct.s[-1]) if duct is not None else 0.0,
                    }
                    return [t for t, _n in painted], meta
                grow *= 1.12
        inside = np.array([all(g.contains(q, 5.0) for g in grids) for q in panc.pts])
        if not inside.any():
            raise ValueError(f"the field of view {grids[0].fov()} mm (Z, Y, X) does not contain the pancreas, "
                             "so no tumour can be placed; use a larger shape or spacing")
        s_t = float(rng.choice(panc.s[inside]))
    raise RuntimeError(f"could not place a tumour of >= {MIN_TUMOR_VOXELS} voxels on this grid")


# --------------------------------------------------------------------------------------------------
# Image formation
# --------------------------------------------------------------------------------------------------


def _textures(an: _Anatomy, grid: _Grid) -> dict:
    _sl, vecs = grid.full()
    return {"fine": an.noise["tex_fine"].box(vecs), "coarse": an.noise["tex_coarse"].box(vecs)}


# Texture amplitudes per phase: (phase, fine/coarse, tissue). The spleen is heterogeneous ("moire")
# in the arterial phase only.
_TEX_AMP = np.array([[m[4] for m in _HU_MODEL.values()], [m[5] for m in _HU_MODEL.values()]], dtype=np.float32)
_TEX_AMP = np.stack([_TEX_AMP, _TEX_AMP])
_TEX_AMP[0, 1, _T["spleen"]] = 22.0


def _render(tissue: np.ndarray, tex: dict, hu: np.ndarray, tex_amp: np.ndarray, fat_thr: float, blur: float,
            noise_sd: float, noise_corr: float, rng: np.random.Generator) -> np.ndarray:
    """Piecewise HU + texture -> partial-volume blur -> correlated noise -> int16 (Z, Y, X)."""
    img = hu.astype(np.float32)[tissue]
    img += tex_amp[0][tissue] * tex["fine"] + tex_amp[1][tissue] * tex["coarse"]
    # Interlobular fat in the gland lowers its HU without changing its label.
    panc = tissue == _T["pancreas"]
    ff = np.clip(0.5 * (tex["fine"][panc] - fat_thr), 0.0, 0.6)
    img[panc] = img[panc] * (1 - ff) + ff * hu[_T["fat"]]
    img = ndimage.gaussian_filter(img, blur, mode="nearest")
    n = rng.standard_normal(tissue.shape, dtype=np.float32)
    n = ndimage.gaussian_filter(n, noise_corr, mode="wrap")
    n *= noise_sd / _gauss_std_factor(noise_corr)
    img += n
    return np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)


def _gauss_std_factor(sigma: float) -> float:
    """Std of unit white noise after a 3-D gaussian filter of ``sigma`` voxels (scipy's kernel)."""
    radius = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    return float(np.sqrt((k**2).sum()) ** 3)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def generate_case(seed: int | np.random.SeedSequence, *, abnormal: bool,
                  shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = DEFAULT_SPACING,
                  case_id: str = "case") -> PhantomCase:
    """Generate one dual-phase case on a (Z, Y, X) grid of ``shape`` voxels of ``spacing`` mm.

    The anatomy depends only on ``seed`` and ``abnormal``; ``shape``/``spacing`` only change how it is
    sampled (it is centred on the grid, so small fields of view crop it). The same seed gives
    bit-identical output. A tumour is guaranteed at least 40 voxels in both phase label maps (it is
    grown until it has). Raises ``ValueError`` for a bad seed, shape or spacing.
    """
    ss = _seed_sequence(seed)
    shape = _check_shape(shape)
    spacing = check_spacing(spacing)
    abnormal = bool(abnormal)
    anat_ss, noise_a_ss, noise_v_ss, misc_ss, reloc_ss = ss.spawn(5)
    rng = np.random.default_rng(anat_ss)
    an = _sample_anatomy(rng, abnormal)
    misc = np.random.default_rng(misc_ss)
    shift = (misc.uniform(-5.0, 5.0), misc.uniform(-4.0, 4.0), misc.uniform(-4.0, 4.0))
    blur = misc.uniform(0.6, 1.0)
    noise_sd = (misc.uniform(10.0, 20.0), misc.uniform(10.0, 20.0))
    noise_corr = misc.uniform(0.45, 0.75)

    grids = (_Grid(shape, spacing, (0.0, 0.0, 0.0)), _Grid(shape, spacing, shift))
    texs = [_textures(an, g) for g in grids]
    tissues = [_rasterise(an, g, t) for g, t in zip(grids, texs, strict=True)]

    tumor_meta = None
    duct_len = 0.0
    if an.tumor is not None:
        tissues, placed = _place_lesions(an, grids, tissues, np.random.default_rng(reloc_ss))
        tu = an.tumor
        vis = [abs(c) >= 15.0 for c in tu["contrast"]]
        duct_len = placed.pop("duct_length_mm")
        tumor_meta = placed | {
            "contrast_hu": {"arterial": float(tu["contrast"][0]), "venous": float(tu["contrast"][1])},
            "pattern": tu["pattern"],
            "visible": {"arterial": bool(vis[0]), "venous": bool(vis[1])},
            "cystic": bool(tu["cystic"]),
        }

    hu = an.p["hu"]
    images = []
    labels = []
    for k, (tissue, tex, nss) in enumerate(zip(tissues, texs, (noise_a_ss, noise_v_ss), strict=True)):
        images.append(_render(tissue, tex, hu[k], _TEX_AMP[k], an.p["panc_fat_thr"], blur, noise_sd[k], noise_corr,
                              np.random.default_rng(nss)))
        labels.append(_LABEL_OF_TISSUE[tissue])

    counts = [np.bincount(lab.ravel(), minlength=4) for lab in labels]
    duct_voxels = {"arterial": int(counts[0][DUCT]), "venous": int(counts[1][DUCT])}
    duct_meta: dict = {"present": max(duct_voxels.values()) > 0, "voxels": duct_voxels}
    if duct_meta["present"]:
        duct_meta.update(diameter_mm=float(2 * an.duct["radius"]), length_mm=duct_len)
    meta = {
        "case_id": case_id,
        "abnormal": abnormal,
        "generator_version": GENERATOR_VERSION,
        "shape": list(shape),
        "spacing": list(spacing),
        "venous_shift_zyx_mm": [float(v) for v in shift],
        "blur_sigma_vox": float(blur),
        "noise_sd_hu": {"arterial": float(noise_sd[0]), "venous": float(noise_sd[1])},
        "pancreas_voxels": {"arterial": int(counts[0][PANCREAS]), "venous": int(counts[1][PANCREAS])},
        "tumor": tumor_meta,
        "duct": duct_meta,
        "habitus_mm": {k: float(an.p[k]) for k in ("a", "b", "t_fat", "t_mus")},
        "hu": {ph: {n: float(hu[k, _T[n]]) for n in ("pancreas", "liver", "spleen", "artery", "portal",
                                                    "kidney_cortex", "tumor", "fat", "muscle")}
               for k, ph in enumerate(("arterial", "venous"))},
    }
    return PhantomCase(case_id=case_id, abnormal=abnormal, arterial=images[0], venous=images[1],
                       arterial_label=labels[0], venous_label=labels[1], spacing=spacing,
                       affine=affine_from_spacing(spacing), meta=meta)


def write_cohort(out_dir: str | Path, *, n_normal: int, n_abnormal: int, seed: int,
                 shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = DEFAULT_SPACING) -> Path:
    """Write a synthetic cohort and return the path of its ``manifest.csv``.

    Layout: ``out_dir/cases/case_NNNN/{arterial,arterial_label,venous,venous_label}.nii.gz`` (CT int16,
    labels uint8, (Z, Y, X) arrays), ``out_dir/manifest.csv`` and ``out_dir/phantom.json``. Case ``i``
    is ``generate_case(np.random.SeedSequence(seed).spawn(n)[i], ...)``; which cases are abnormal is a
    seeded shuffle. Raises ``ValueError`` naming the bad count, seed, shape or spacing.
    """
    n_normal = _check_count(n_normal, "n_normal")
    n_abnormal = _check_count(n_abnormal, "n_abnormal")
    if n_normal + n_abnormal == 0:
        raise ValueError(f"n_normal + n_abnormal must be > 0, got {n_normal} + {n_abnormal}")
    if isinstance(seed, np.random.SeedSequence):
        raise ValueError("write_cohort needs an integer seed, got a SeedSequence")
    root_ss = _seed_sequence(seed)
    shape = _check_shape(shape)
    spacing = check_spacing(spacing)
    n = n_normal + n_abnormal
    flags = np.array([False] * n_normal + [True] * n_abnormal)
    # The order stream is the root sequence itself; the cases use its children, so they are independent.
    flags = flags[np.random.default_rng(np.random.SeedSequence(int(seed))).permutation(n)]
    children = root_ss.spawn(n)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries, metas = [], []
    for i, (child, abnormal) in enumerate(zip(children, flags, strict=True)):
        case = generate_case(child, abnormal=bool(abnormal), shape=shape, spacing=spacing, case_id=f"case_{i:04d}")
        rel = Path("cases") / case.case_id
        paths = {}
        for name in ("arterial", "arterial_label", "venous", "venous_label"):
            paths[name] = (rel / f"{name}.nii.gz").as_posix()
            save_nifti(out / paths[name], getattr(case, name), case.affine)
        entries.append(CaseEntry(case_id=case.case_id, abnormal=int(case.abnormal), **paths))
        metas.append(case.meta)
    manifest = write_manifest(out, entries)
    info = {"generator_version": GENERATOR_VERSION, "seed": int(seed), "shape": list(shape),
            "spacing": list(spacing), "n_normal": n_normal, "n_abnormal": n_abnormal, "cases": metas}
    (out / PHANTOM_JSON).write_text(json.dumps(info, indent=1))
    return manifest
