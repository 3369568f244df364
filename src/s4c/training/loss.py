"""Deep-supervision loss of the paper: weighted voxelwise softmax cross-entropy over three heads.

Logits are ``(N, C, Z, Y, X)`` and label maps ``(N, Z, Y, X)`` int64 with values in ``[0, C)``, as
produced by :class:`s4c.network.S4CNet` in training mode (``(main, aux1, aux2)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DEEP_SUPERVISION_WEIGHTS", "LOSSES", "deep_supervision_loss", "soft_dice_loss", "training_loss"]

#: Loss names a training run can pick: the paper's cross-entropy, or cross-entropy plus soft Dice.
LOSSES = ("ce", "ce+dice")

#: Weights of the auxiliary-1 (1/4 resolution), auxiliary-2 (1/2 resolution) and main heads, in that
#: order: the paper's 1 : 2 : 5 ratio. Note the order differs from the network's output order
#: ``(main, aux1, aux2)``.
DEEP_SUPERVISION_WEIGHTS: tuple[float, float, float] = (1.0, 2.0, 5.0)


def _check_target(target: torch.Tensor) -> None:
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.dtype != torch.int64:
        raise ValueError(f"target must be int64 labels, got dtype {target.dtype}")
    if target.dim() != 4:
        raise ValueError(
            f"target must be (N, Z, Y, X), got {target.dim()}-D with shape {tuple(target.shape)}"
        )


def _check_logits(logits: object, target: torch.Tensor, name: str) -> int:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"{name} must be floating-point logits, got dtype {logits.dtype}")
    if logits.dim() != 5:
        raise ValueError(
            f"{name} must be (N, C, Z, Y, X), got {logits.dim()}-D with shape {tuple(logits.shape)}"
        )
    n, c, *spatial = logits.shape
    if (n, *spatial) != tuple(target.shape):
        raise ValueError(
            f"{name} shape {tuple(logits.shape)} (N, C, Z, Y, X) does not match target shape "
            f"{tuple(target.shape)} (N, Z, Y, X)"
        )
    if c < 2:
        raise ValueError(f"{name} must have at least 2 classes, got C={c}")
    return c


def _check_labels(target: torch.Tensor, num_classes: int) -> None:
    if target.numel() == 0:
        raise ValueError(f"target must not be empty, got shape {tuple(target.shape)}")
    lo, hi = int(target.min()), int(target.max())
    if lo < 0:
        raise ValueError(f"target contains label {lo}, outside [0, {num_classes - 1}]")
    if hi >= num_classes:
        raise ValueError(f"target contains label {hi}, outside [0, {num_classes - 1}]")


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(w) for w in weights)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights must be 3 numbers (aux1, aux2, main), got {weights!r}") from exc
    if len(values) != 3:
        raise ValueError(f"weights must have 3 entries (aux1, aux2, main), got {len(values)}: {weights!r}")
    for name, w in zip(("aux1", "aux2", "main"), values, strict=True):
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weight for {name} must be finite and >= 0, got {w!r}")
    if sum(values) <= 0:
        raise ValueError(f"weights must not all be zero, got {weights!r}")
    return values  # type: ignore[return-value]


def deep_supervision_loss(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    weights: Sequence[float] = DEEP_SUPERVISION_WEIGHTS,
    *,
    class_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Weighted mean of voxelwise softmax cross-entropies of the main and the two auxiliary heads.

    Args:
        outputs: ``(main, aux1, aux2)`` logits, each ``(N, C, Z, Y, X)`` at full resolution (the
            training-mode output of :class:`s4c.network.S4CNet`), or a single ``(N, C, Z, Y, X)``
            tensor (the eval-mode output), for which the plain cross-entropy is returned.
        target: ``(N, Z, Y, X)`` int64 labels in ``[0, C)``.
        weights: ``(w_aux1, w_aux2, w_main)``; the paper's ``(1, 2, 5)`` by default. Ignored for a
            single tensor.
        class_weights: optional per-class weights of the cross-entropy (``C`` non-negative numbers;
            PyTorch's weighted mean). None, the paper's setting, weighs every voxel equally.

    Returns:
        A scalar: ``(w_aux1 * CE(aux1) + w_aux2 * CE(aux2) + w_main * CE(main)) / sum(weights)``, where
        each ``CE`` is the cross-entropy averaged over all ``N * Z * Y * X`` voxels. Dividing by the
        weight sum makes the result a convex combination, so its magnitude is that of a single
        cross-entropy (about ``log C`` at initialisation) whatever the weights; only their ratio
        matters. (An un-normalised sum would be ``sum(weights)`` = 8 times larger, equivalent to an 8x
        learning rate under SGD.)

    Raises:
        ValueError: wrong number of outputs, a non-tensor, a shape or dtype mismatch between logits
            and target, a label outside ``[0, C)`` (the message names it), or invalid weights.
    """
    _check_target(target)
    if isinstance(outputs, torch.Tensor):
        num_classes = _check_logits(outputs, target, "outputs")
        _check_labels(target, num_classes)
        return F.cross_entropy(outputs, target, weight=_class_weights(class_weights, num_classes, outputs))

    if not isinstance(outputs, Sequence) or len(outputs) != 3:
        got = len(outputs) if isinstance(outputs, Sequence) else type(outputs).__name__
        raise ValueError(f"outputs must be a tensor or a (main, aux1, aux2) sequence of 3 tensors, got {got}")
    w_aux1, w_aux2, w_main = _check_weights(weights)
    main, aux1, aux2 = outputs
    classes = {
        _check_logits(main, target, "outputs[0] (main)"),
        _check_logits(aux1, target, "outputs[1] (aux1)"),
        _check_logits(aux2, target, "outputs[2] (aux2)"),
    }
    if len(classes) != 1:
        raise ValueError(f"the three heads must have the same number of classes, got {sorted(classes)}")
    num_classes = classes.pop()
    _check_labels(target, num_classes)
    cw = _class_weights(class_weights, num_classes, main)

    total = w_aux1 * F.cross_entropy(aux1, target, weight=cw)
    total = total + w_aux2 * F.cross_entropy(aux2, target, weight=cw)
    total = total + w_main * F.cross_entropy(main, target, weight=cw)
    return total / (w_aux1 + w_aux2 + w_main)


def _class_weights(values: Sequence[float] | None, num_classes: int, like: torch.Tensor) -> torch.Tensor | None:
    if values is None:
        return None
    w = [float(v) for v in values]
    if len(w) != num_classes or any(not (v >= 0) or v == float("inf") for v in w) or not any(w):
        raise ValueError(f"class_weights must be {num_classes} finite non-negative numbers, not all zero; "
                         f"got {values!r}")
    return torch.tensor(w, dtype=like.dtype, device=like.device)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1e-5) -> torch.Tensor:
    """``1 - mean soft Dice`` over the foreground classes ``1..C-1``, computed over the whole batch.

    ``logits`` ``(N, C, Z, Y, X)``, ``target`` ``(N, Z, Y, X)`` int64. The batch is pooled per class (as
    nnU-Net's batch Dice), so a patch without tumour still penalises predicted tumour through the
    false positives it adds to the batch's sum.
    """
    num_classes = _check_logits(logits, target, "logits")
    probs = torch.softmax(logits.float(), dim=1)[:, 1:]
    onehot = F.one_hot(target, num_classes).permute(0, 4, 1, 2, 3)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3, 4)
    tp = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * tp + smooth) / (denom + smooth)
    return 1.0 - dice.mean()


def training_loss(outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, loss: str = "ce", *,
                  class_weights: Sequence[float] | None = None) -> torch.Tensor:
    """The loss named ``loss`` (:data:`LOSSES`): deep-supervision cross-entropy, plus the soft Dice of
    the main head for ``"ce+dice"``."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    total = deep_supervision_loss(outputs, target, class_weights=class_weights)
    if loss == "ce+dice":
        main = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
        total = total + soft_dice_loss(main, target)
    return total
