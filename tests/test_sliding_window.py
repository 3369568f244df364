"""Tiling and voting with oracle predictors on awkward shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from s4c.inference import _kernels
from s4c.inference.merge import S4C_TIE_PRIORITY, LabelVoter, ProbabilityVoter, choose_word
from s4c.inference.sliding_window import sliding_window_inference
from s4c.inference.tiling import max_coverage, window_origins, window_starts

from reference import vote_reference

AWKWARD = [(64, 64, 64), (65, 64, 64), (30, 64, 70), (10, 20, 30), (64, 65, 129), (97, 83, 71), (1, 1, 1),
           (150, 64, 40)]
BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="no numba"))]


def identity_labels(batch: np.ndarray) -> np.ndarray:
    return batch[:, 0].astype(np.uint8)


def one_hot(batch: np.ndarray) -> np.ndarray:
    lab = batch[:, 0].astype(np.int64)
    out = np.zeros((len(batch), 4, *batch.shape[2:]), np.float32)
    np.put_along_axis(out, lab[:, None], 1.0, axis=1)
    return out


def test_window_starts_flush_and_counts():
    assert window_starts(64, 64, 20).tolist() == [0]
    assert window_starts(65, 64, 20).tolist() == [0, 1]
    assert window_starts(100, 64, 20).tolist() == [0, 20, 36]
    s = window_starts(512, 64, 20)
    assert len(s) == 24 and s[-2:].tolist() == [440, 448]
    assert len(window_starts(200, 64, 20)) == 8
    assert len(window_origins((200, 512, 512), 64, 20)) == 4608
    assert len(window_origins((96, 128, 128), 64, 20)) == 75
    with pytest.raises(ValueError, match="shorter"):
        window_starts(63, 64, 20)


@pytest.mark.parametrize("shape", AWKWARD)
@pytest.mark.parametrize("backend", BACKENDS)
def test_label_preserving_predictor_reproduces_input(shape, backend):
    rng = np.random.default_rng(sum(shape))
    labels = rng.integers(0, 4, shape).astype(np.uint8)
    before = labels.copy()
    out = sliding_window_inference(labels, identity_labels, stride=20, batch_size=5, backend=backend,
                                   pad_value=0)
    assert out.shape == shape and out.dtype == np.uint8
    assert np.array_equal(out, labels)
    assert np.array_equal(labels, before)


@pytest.mark.parametrize("shape", [(65, 64, 64), (30, 64, 70), (70, 71, 90)])
def test_probability_vote_reproduces_input(shape):
    labels = np.random.default_rng(1).integers(0, 4, shape).astype(np.int16)
    out = sliding_window_inference(labels, one_hot, stride=17, batch_size=3, pad_value=0)
    assert np.array_equal(out, labels)


@pytest.mark.parametrize("window,stride", [(16, 16), (16, 5), (16, 1), (12, 7), (8, 3)])
def test_small_windows_and_strides(window, stride):
    labels = np.random.default_rng(window * stride).integers(0, 4, (21, 17, 19)).astype(np.uint8)
    out = sliding_window_inference(labels, identity_labels, window=window, stride=stride, pad_value=0)
    assert np.array_equal(out, labels)


def test_short_axis_padding_value_reaches_predictor():
    seen = []

    def pred(batch):
        seen.append(batch.copy())
        return np.zeros((len(batch), 64, 64, 64), np.uint8)

    image = np.full((10, 64, 64), 5, np.int16)
    sliding_window_inference(image, pred, pad_value=-1024)
    (batch,) = seen
    assert batch.dtype == np.float32 and batch.shape == (1, 1, 64, 64, 64)
    assert (batch[0, 0, :10] == 5).all() and (batch[0, 0, 10:] == -1024).all()
    sliding_window_inference(image, pred)  # default pads with the image minimum
    assert (seen[-1][0, 0, 10:] == 5).all()


class OriginPredictor:
    """Returns pseudo-random labels that depend on the window position, so overlaps disagree.

    The image holds each voxel's flat index, which lets the oracle recover the window origin.
    """

    def __init__(self, shape, window, seed):
        self.shape, self.window, self.seed = shape, window, seed
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, batch):
        flat = batch[:, 0, 0, 0, 0].astype(np.int64)
        origins = np.stack(np.unravel_index(flat, self.shape), axis=1)
        out = np.empty((len(batch), *batch.shape[2:]), np.uint8)
        for i, o in enumerate(origins):
            rng = np.random.default_rng([self.seed, *o.tolist()])
            # Biased classes make ties and near-ties frequent in overlaps of 2-8 windows.
            out[i] = rng.choice(4, size=batch.shape[2:], p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint8)
        self.calls.append((origins, out.copy()))
        return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "window", "stride"), [((20, 23, 26), 8, 3), ((16, 16, 30), 16, 5),
                                                          ((33, 9, 12), 8, 8), ((40, 40, 40), 16, 16)])
def test_majority_vote_matches_reference(backend, shape, window, stride):
    image = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    pred = OriginPredictor(shape, window, seed=7)
    out = sliding_window_inference(image, pred, window=window, stride=stride, batch_size=4, backend=backend)
    origins = np.concatenate([o for o, _ in pred.calls])
    patches = np.concatenate([p for _, p in pred.calls])
    assert len(origins) == len(window_origins(shape, window, stride))
    expected = vote_reference(shape, origins, patches, 4, S4C_TIE_PRIORITY)
    assert np.array_equal(out, expected)


def test_tie_rule_prefers_tumour_then_duct_then_pancreas():
    shape = (8, 8, 16)
    for a, b, want in ((0, 1, 1), (1, 2, 2), (3, 2, 2), (1, 3, 3), (0, 3, 3), (0, 2, 2)):
        voter = LabelVoter(shape, 8, 8, num_classes=4)
        voter.add(np.full((1, 8, 8, 8), a, np.uint8), np.array([[0, 0, 0]]))
        voter.add(np.full((1, 8, 8, 8), b, np.uint8), np.array([[0, 0, 0]]))
        voter.add(np.full((1, 8, 8, 8), 0, np.uint8), np.array([[0, 0, 8]]))
        out = voter.result()
        assert (out[:, :, :8] == want).all() and (out[:, :, 8:] == 0).all()


def test_custom_tie_priority_and_probability_ties():
    voter = ProbabilityVoter((4, 4, 4), 4, num_classes=3, tie_priority=(0, 1, 2))
    voter.add(np.full((1, 3, 4, 4, 4), 1 / 3, np.float32), np.array([[0, 0, 0]]))
    assert (voter.result() == 0).all()
    with pytest.raises(ValueError, match="permutation"):
        LabelVoter((4, 4, 4), 4, 4, tie_priority=(0, 1, 1, 2))


def test_word_choice_for_coverage():
    assert choose_word(4, 125) == (np.uint32, 8)
    assert choose_word(4, 255) == (np.uint32, 8)
    assert choose_word(4, 256) == (np.uint64, 16)
    assert choose_word(8, 100) == (np.uint64, 8)
    with pytest.raises(ValueError, match="cannot pack"):
        choose_word(4, 70000)
    assert max_coverage((200, 512, 512), 64, 20) <= 125


def test_voter_rejects_out_of_order_origins():
    voter = LabelVoter((16, 8, 8), 8, 8)
    voter.add(np.zeros((1, 8, 8, 8), np.uint8), np.array([[8, 0, 0]]))
    with pytest.raises(ValueError, match="Z-major"):
        voter.add(np.zeros((1, 8, 8, 8), np.uint8), np.array([[0, 0, 0]]))


@given(st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40)), st.integers(4, 12),
       st.integers(1, 12), st.integers(1, 7))
def test_identity_any_shape(shape, window, stride, batch):
    stride = min(stride, window)
    labels = np.random.default_rng(sum(shape)).integers(0, 4, shape).astype(np.uint8)
    out = sliding_window_inference(labels, identity_labels, window=window, stride=stride, batch_size=batch,
                                   pad_value=0)
    assert np.array_equal(out, labels)


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((4, 4)), {}, "3-D"),
        (np.zeros((4, 4, 4, 4)), {}, "3-D"),
        (np.full((4, 4, 4), np.nan), {}, "NaN"),
        (np.zeros((4, 4, 4), bool), {}, "dtype"),
        (np.zeros((4, 4, 4), complex), {}, "dtype"),
        (np.zeros((4, 4, 4)), {"stride": 0}, "stride"),
        (np.zeros((4, 4, 4)), {"stride": 65}, "stride 65"),
        (np.zeros((4, 4, 4)), {"batch_size": 0}, "batch_size"),
        (np.zeros((4, 4, 4)), {"window": 2.5}, "window"),
        (np.zeros((4, 4, 4)), {"pad_value": float("inf")}, "pad_value"),
    ],
)
def test_rejects_bad_input(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_inference(image, identity_labels, **kwargs)


@pytest.mark.parametrize(
    ("predictor", "match"),
    [
        (lambda b: b[:, 0].astype(np.int32), "uint8"),
        (lambda b: np.full((len(b), 64, 64, 64), 4, np.uint8), "label 4"),
        (lambda b: np.zeros((len(b), 32, 64, 64), np.uint8), "shape"),
        (lambda b: np.zeros((len(b) + 1, 64, 64, 64), np.uint8), "shape"),
        (lambda b: np.full((len(b), 4, 64, 64, 64), np.nan, np.float32), "NaN"),
        (lambda b: np.zeros((len(b), 4, 64, 64, 64), np.int32), "floating"),
        (lambda b: b[:, 0].astype(np.uint8).tolist(), "numpy array"),
    ],
)
def test_rejects_bad_predictor_output(predictor, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_inference(np.zeros((64, 64, 64), np.float32), predictor)


def test_rejects_predictor_switching_output_kind():
    calls = []

    def pred(batch):
        calls.append(1)
        return identity_labels(batch) if len(calls) == 1 else one_hot(batch)

    with pytest.raises(ValueError, match="switched"):
        sliding_window_inference(np.zeros((64, 64, 100)), pred, batch_size=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_voter_rejects_bad_batches(backend):
    voter = LabelVoter((8, 8, 16), 8, 8, backend=backend)
    with pytest.raises(ValueError, match="label 4"):
        voter.add(np.full((1, 8, 8, 8), 4, np.uint8), np.array([[0, 0, 0]]))
    with pytest.raises(ValueError, match="uint8"):
        voter.add(np.zeros((1, 8, 8, 8), np.int16), np.array([[0, 0, 0]]))
    with pytest.raises(ValueError, match="outside"):
        voter.add(np.zeros((1, 8, 8, 8), np.uint8), np.array([[0, 0, 9]]))
    with pytest.raises(ValueError, match="origin"):
        voter.add(np.zeros((2, 8, 8, 8), np.uint8), np.array([[0, 0, 0]]))
    pv = ProbabilityVoter((8, 8, 8), 8)
    with pytest.raises(ValueError, match="NaN"):
        pv.add(np.full((1, 4, 8, 8, 8), np.inf, np.float32), np.array([[0, 0, 0]]))
