"""Tests for the S4C network (s4c.network) and the deep-supervision loss (s4c.training.loss)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from s4c.labels import NUM_CLASSES, PATCH_SIZE
from s4c.network import NetworkConfig, S4CNet, count_parameters, flops_per_patch
from s4c.training.loss import DEEP_SUPERVISION_WEIGHTS, deep_supervision_loss

C = NUM_CLASSES


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running stats and affine parameters, so eval mode is not identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _hooked_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 x MACs per sample of every Conv3d / ConvTranspose3d that actually runs, from real tensor shapes."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        k = int(np.prod(module.kernel_size))
        if isinstance(module, nn.ConvTranspose3d):
            # Each input voxel scatters a k^3 block to every output channel.
            per_sample = inputs[0][0].numel() * (module.out_channels // module.groups) * k
        else:
            per_sample = output[0].numel() * (module.in_channels // module.groups) * k
        total += 2 * per_sample

    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


# --------------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes_eval_and_train(batch: int) -> None:
    torch.manual_seed(0)
    model = S4CNet(width=4)
    x = torch.randn(batch, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
    expected = (batch, C, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)

    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == expected
    assert out.dtype == torch.float32

    model.train()
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == 3
    for o in outs:
        assert isinstance(o, torch.Tensor)
        assert o.shape == expected


def test_non_cubic_input_and_config() -> None:
    model = NetworkConfig(width=4, num_classes=3, in_channels=2).build()
    assert isinstance(model, S4CNet)
    assert (model.width, model.num_classes, model.in_channels) == (4, 3, 2)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 2, 8, 16, 24))
    assert out.shape == (2, 3, 8, 16, 24)
    with pytest.raises(AttributeError):
        NetworkConfig().width = 8  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_constructor_arguments(bad: object) -> None:
    with pytest.raises(ValueError, match="width"):
        S4CNet(width=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="patch"):
        flops_per_patch(8, patch=bad)  # type: ignore[arg-type]


def test_flops_patch_must_divide_by_eight() -> None:
    with pytest.raises(ValueError, match="12"):
        flops_per_patch(8, patch=12)


def test_paper_width_channels_and_parameters(record_property: pytest.RecordProperty) -> None:
    torch.manual_seed(0)
    model = NetworkConfig().build()  # the paper's width, 32
    assert model.width == 32
    channels: dict[str, int] = {}
    names = ["conv1b", "pool1", "conv2b", "pool2", "conv3b", "pool3", "conv4b", "dec3b", "dec2b", "dec1b"]

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            channels[name] = output.shape[1]

        return hook

    handles = [getattr(model, n).register_forward_hook(make_hook(n)) for n in names]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 16, 16, 16))
    for h in handles:
        h.remove()
    assert out.shape == (1, C, 16, 16, 16)
    assert channels == {
        "conv1b": 32, "pool1": 32, "conv2b": 64, "pool2": 64, "conv3b": 128,
        "pool3": 128, "conv4b": 256, "dec3b": 128, "dec2b": 64, "dec1b": 32,
    }  # fmt: skip

    n_params = count_parameters(model)
    record_property("params_w32", n_params)
    print(f"S4CNet(width=32): {n_params:,} trainable parameters")
    assert 4_500_000 < n_params < 5_500_000
    # Freezing a layer removes exactly its parameters from the trainable count.
    for p in model.head.parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == n_params - (32 * C + C)
    assert count_parameters(model, trainable_only=False) == n_params


def test_flops_per_patch_matches_hooks() -> None:
    torch.manual_seed(0)
    model = S4CNet(width=8).eval()
    x = torch.zeros(1, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
    assert _hooked_flops(model, x) == flops_per_patch(8)
    # Per-sample: the batch size does not change it.
    assert _hooked_flops(model, torch.zeros(2, 1, 16, 16, 16)) == flops_per_patch(8, patch=16)
    # Paper width on a small patch, and a non-default class / input-channel count.
    paper = S4CNet(width=32).eval()
    assert _hooked_flops(paper, torch.zeros(1, 1, 16, 16, 16)) == flops_per_patch(32, patch=16)
    model = S4CNet(in_channels=2, num_classes=3, width=4).eval()
    assert _hooked_flops(model, torch.zeros(1, 2, 24, 24, 24)) == flops_per_patch(
        4, num_classes=3, patch=24, in_channels=2
    )
    # The convolutions scale with width^2, so the paper's width costs ~16x width 8.
    assert 15 < flops_per_patch(32) / flops_per_patch(8) < 16.1


# ------------------------------------------------------------------------------------------------ loss


def _random_problem(n: int = 2, shape: tuple[int, int, int] = (4, 5, 6), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, (n, *shape), generator=gen)
    outs = tuple(torch.randn(n, C, *shape, generator=gen) for _ in range(3))
    return outs, target


def test_loss_matches_hand_computation() -> None:
    (main, aux1, aux2), target = _random_problem()
    ce1, ce2, ce_main = (F.cross_entropy(o, target) for o in (aux1, aux2, main))
    expected = (1 * ce1 + 2 * ce2 + 5 * ce_main) / 8
    loss = deep_supervision_loss((main, aux1, aux2), target)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    assert DEEP_SUPERVISION_WEIGHTS == (1.0, 2.0, 5.0)
    # A list works like a tuple; custom weights are used as given and normalised by their sum.
    torch.testing.assert_close(deep_supervision_loss([main, aux1, aux2], target), expected)
    custom = deep_supervision_loss((main, aux1, aux2), target, weights=(0.0, 0.0, 3.0))
    torch.testing.assert_close(custom, F.cross_entropy(main, target))
    # Eval output: a single tensor gives the plain cross-entropy.
    torch.testing.assert_close(deep_supervision_loss(main, target), F.cross_entropy(main, target))


def test_loss_contributions_scale_1_2_5() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, C, (2, 4, 4, 4), generator=gen)
    right = 10.0 * F.one_hot(target, C).permute(0, 4, 1, 2, 3).float()
    wrong = 10.0 * F.one_hot((target + 1) % C, C).permute(0, 4, 1, 2, 3).float()

    base = deep_supervision_loss((right, right, right), target)
    only_aux1 = deep_supervision_loss((right, wrong, right), target) - base
    only_aux2 = deep_supervision_loss((right, right, wrong), target) - base
    only_main = deep_supervision_loss((wrong, right, right), target) - base
    assert only_aux1 > 1.0  # a confidently wrong head contributes a large cross-entropy
    torch.testing.assert_close(only_aux2 / only_aux1, torch.tensor(2.0))
    torch.testing.assert_close(only_main / only_aux1, torch.tensor(5.0))
    # All three wrong: the normalised loss is one head's cross-entropy.
    all_wrong = deep_supervision_loss((wrong, wrong, wrong), target)
    torch.testing.assert_close(all_wrong, F.cross_entropy(wrong, target))


def test_loss_backpropagates_to_all_heads() -> None:
    torch.manual_seed(0)
    model = S4CNet(width=4).train()
    x = torch.randn(2, 1, 16, 16, 16)
    target = torch.randint(0, C, (2, 16, 16, 16))
    loss = deep_supervision_loss(model(x), target)
    assert torch.isfinite(loss)
    loss.backward()
    for name in ["head", "aux1.conv", "aux1.up", "aux2.conv", "aux2.up", "conv1a.0", "conv4b.0", "up1"]:
        module = model.get_submodule(name)
        for pname, p in module.named_parameters():
            assert p.grad is not None, f"{name}.{pname} has no gradient"
            assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


def test_each_aux_head_gets_gradient_only_through_its_own_term() -> None:
    torch.manual_seed(0)
    model = S4CNet(width=4).train()
    x = torch.randn(1, 1, 16, 16, 16)
    target = torch.randint(0, C, (1, 16, 16, 16))
    deep_supervision_loss(model(x), target, weights=(0.0, 1.0, 1.0)).backward()
    assert model.aux1.up.weight.grad is None or model.aux1.up.weight.grad.abs().sum() == 0
    assert model.aux2.up.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda o, t: (o, t.to(torch.int32)), "int64"),
        (lambda o, t: (o, t.float()), "int64"),
        (lambda o, t: (o, t[0]), "N, Z, Y, X"),
        (lambda o, t: (o, t[:, :-1]), "does not match"),
        (lambda o, t: ((o[0], o[1][:, :, :-1], o[2]), t), "aux1"),
        (lambda o, t: ((o[0], o[1], o[2][:, :2]), t), "same number of classes"),
        (lambda o, t: (o[0][0], t), "N, C, Z, Y, X"),
        (lambda o, t: (o[:2], t), "3 tensors"),
        (lambda o, t: ((o[0], o[1], o[2].long()), t), "floating-point"),
        (lambda o, t: ((o[0], o[1], o[2].numpy()), t), "torch.Tensor"),
        (lambda o, t: (o, t.numpy()), "torch.Tensor"),
        (lambda o, t: (o, torch.where(t == 0, torch.full_like(t, 7), t)), "label 7"),
        (lambda o, t: (o, torch.where(t == 0, torch.full_like(t, -3), t)), "label -3"),
        (lambda o, t: (o[0], torch.where(t == 0, torch.full_like(t, 4), t)), "label 4"),
    ],
)
def test_loss_rejects_bad_inputs(make, match: str) -> None:
    outs, target = _random_problem()
    target[0, 0, 0, 0] = 0  # make sure the label-rewriting cases have something to rewrite
    bad_outs, bad_target = make(outs, target)
    with pytest.raises(ValueError, match=match):
        deep_supervision_loss(bad_outs, bad_target)


@pytest.mark.parametrize(
    ("weights", "match"),
    [((1.0, 2.0), "3 entries"), ((1.0, -2.0, 5.0), "aux2"), ((0.0, 0.0, 0.0), "all be zero"),
     ((1.0, float("nan"), 5.0), "aux2"), (("a", 1, 1), "3 numbers")],
)  # fmt: skip
def test_loss_rejects_bad_weights(weights, match: str) -> None:
    outs, target = _random_problem()
    with pytest.raises(ValueError, match=match):
        deep_supervision_loss(outs, target, weights=weights)


# ------------------------------------------------------------------------------------------------ ONNX


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter, chosen by dynamo=False
def test_onnx_export_dynamic_batch(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = S4CNet(width=4)
    _randomise_batchnorm(model)
    model.eval()
    path = tmp_path / "s4c_w4.onnx"
    example = torch.randn(2, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["logits"]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(3)
    for batch in (1, 3):
        x = torch.randn(batch, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        (got,) = session.run(["logits"], {"input": x.numpy()})
        assert got.shape == (batch, C, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
        print(f"batch {batch}: max |onnxruntime - torch| = {np.abs(got - ref).max():.2e}")
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
        agree = np.mean(got.argmax(axis=1) == ref.argmax(axis=1))
        assert agree >= 0.999, f"batch {batch}: argmax agrees on only {agree:.5f} of voxels"


def test_class_weighted_loss_matches_torch_and_validates():
    import torch.nn.functional as F

    from s4c.training.loss import deep_supervision_loss

    torch.manual_seed(0)
    outs = tuple(torch.randn(2, 4, 4, 4, 4) for _ in range(3))
    target = torch.randint(0, 4, (2, 4, 4, 4))
    cw = (1.0, 5.0, 10.0, 10.0)
    w = torch.tensor(cw)
    expected = (F.cross_entropy(outs[1], target, weight=w) + 2 * F.cross_entropy(outs[2], target, weight=w)
                + 5 * F.cross_entropy(outs[0], target, weight=w)) / 8
    assert torch.allclose(deep_supervision_loss(outs, target, class_weights=cw), expected)
    assert torch.allclose(deep_supervision_loss(outs[0], target, class_weights=cw),
                          F.cross_entropy(outs[0], target, weight=w))
    for bad in ((1, 2, 3), (1, -1, 1, 1), (0, 0, 0, 0), (1, float("nan"), 1, 1)):
        with pytest.raises(ValueError, match="class_weights"):
            deep_supervision_loss(outs, target, class_weights=bad)
