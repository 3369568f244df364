"""The paper's 3-D segmentation network: a residual-sum encoder-decoder with deep supervision.

Every tensor is laid out ``(N, C, Z, Y, X)``: batch, channels, then the three spatial axes slowest to
fastest, the same Z, Y, X order as the rest of the package. The network is fully convolutional; it was
designed for ``64^3`` CT patches (:data:`s4c.labels.PATCH_SIZE`) but accepts any spatial size whose
three extents are divisible by 8 (three 2x poolings).

Architecture, for width ``w`` (the paper uses ``w = 32``)::

    level  resolution  channels  encoder                decoder
    1      1           w         conv1a, conv1b         up1 (+conv1b), dec1a, dec1b -> head
    2      1/2         2w        pool1, conv2a, conv2b  up2 (+conv2b), dec2a, dec2b -> aux2
    3      1/4         4w        pool2, conv3a, conv3b  up3 (+conv3b), dec3a, dec3b -> aux1
    4      1/8         8w        pool3, conv4a, conv4b

* ``convXa/b``, ``decXa/b``: 3^3 convolution (padding 1, no bias) -> BatchNorm3d -> ReLU.
* ``poolX``: 2^3 max-pool, stride 2. ``pool3`` outputs ``4w`` channels (128 at ``w = 32``) and
  ``conv4b`` outputs ``8w`` (256 at ``w = 32``).
* ``upX``: transposed convolution, kernel 2, stride 2, from level ``X+1`` to level ``X`` channels; its
  output is **summed** (residual, not concatenated) with the encoder feature ``convXb`` of that level.
* ``head``: 1^3 convolution to ``num_classes`` at full resolution (the main logits).
* ``aux1``: 1^3 convolution on the level-3 decoder output (1/4 resolution) followed by a transposed
  convolution with kernel = stride = 4 back to full resolution.
* ``aux2``: likewise on the level-2 decoder output (1/2 resolution), kernel = stride = 2.

In eval mode :meth:`S4CNet.forward` returns only the main logits and the auxiliary heads are not
evaluated; in training mode it returns ``(main, aux1, aux2)`` for
:func:`s4c.training.loss.deep_supervision_loss`. There is no data-dependent Python control flow (only
a branch on ``self.training``), so an eval-mode network traces to ONNX with a dynamic batch axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s4c.labels import ARCHITECTURES, NUM_CLASSES, PATCH_SIZE

__all__ = ["ARCHITECTURES", "NetworkConfig", "PoolThreeClassifier", "S4CNet", "UNet3D", "VNet", "build_network",
           "count_parameters", "flops_per_patch"]

#: Total downsampling factor: spatial extents of the input must be divisible by this.
DOWNSAMPLE = 8


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class ConvBNReLU(nn.Sequential):
    """3^3 convolution (padding 1, no bias) -> BatchNorm3d -> ReLU; keeps the spatial shape.

    Input ``(N, in_channels, Z, Y, X)``, output ``(N, out_channels, Z, Y, X)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class AuxHead(nn.Module):
    """1^3 convolution to ``num_classes`` then a transposed convolution (kernel = stride = ``scale``).

    Input ``(N, in_channels, Z/scale, Y/scale, X/scale)``, output ``(N, num_classes, Z, Y, X)``.
    """

    def __init__(self, in_channels: int, num_classes: int, scale: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, kernel_size=1)
        self.up = nn.ConvTranspose3d(num_classes, num_classes, kernel_size=scale, stride=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


class S4CNet(nn.Module):
    """3-D encoder-decoder with residual-sum skips and two deep-supervision heads (see module doc).

    Args:
        in_channels: input channels (1 for a single CT phase).
        num_classes: output classes (4: background, pancreas, tumour, duct).
        width: channels at level 1; levels 2, 3, 4 have ``2w``, ``4w``, ``8w``. The paper uses 32.

    ``forward(x)`` takes ``x`` of shape ``(N, in_channels, Z, Y, X)`` float32 with ``Z, Y, X`` divisible
    by 8 and returns unnormalised logits (no softmax):

    * eval mode: a single tensor ``(N, num_classes, Z, Y, X)``;
    * training mode: the tuple ``(main, aux1, aux2)``, each ``(N, num_classes, Z, Y, X)``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = NUM_CLASSES, width: int = 32) -> None:
        super().__init__()
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.num_classes = _check_positive_int(num_classes, "num_classes")
        self.width = _check_positive_int(width, "width")
        w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width

        # Encoder.
        self.conv1a = ConvBNReLU(in_channels, w1)
        self.conv1b = ConvBNReLU(w1, w1)
        self.pool1 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv2a = ConvBNReLU(w1, w2)
        self.conv2b = ConvBNReLU(w2, w2)
        self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv3a = ConvBNReLU(w2, w3)
        self.conv3b = ConvBNReLU(w3, w3)
        self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv4a = ConvBNReLU(w3, w4)
        self.conv4b = ConvBNReLU(w4, w4)

        # Decoder: upsample, residual sum with the encoder feature, two convolutions.
        self.up3 = nn.ConvTranspose3d(w4, w3, kernel_size=2, stride=2)
        self.dec3a = ConvBNReLU(w3, w3)
        self.dec3b = ConvBNReLU(w3, w3)
        self.up2 = nn.ConvTranspose3d(w3, w2, kernel_size=2, stride=2)
        self.dec2a = ConvBNReLU(w2, w2)
        self.dec2b = ConvBNReLU(w2, w2)
        self.up1 = nn.ConvTranspose3d(w2, w1, kernel_size=2, stride=2)
        self.dec1a = ConvBNReLU(w1, w1)
        self.dec1b = ConvBNReLU(w1, w1)

        # Heads.
        self.head = nn.Conv3d(w1, num_classes, kernel_size=1)
        self.aux1 = AuxHead(w3, num_classes, scale=4)
        self.aux2 = AuxHead(w2, num_classes, scale=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(N, num_classes, Z, Y, X)``; in training mode ``(main, aux1, aux2)`` of that shape."""
        e1, e2, e3 = self._encode(x)
        e4 = self.conv4b(self.conv4a(self.pool3(e3)))  # (N, 8w, Z/8, Y/8, X/8)

        d3 = self.dec3b(self.dec3a(self.up3(e4) + e3))  # (N, 4w, Z/4, Y/4, X/4)
        d2 = self.dec2b(self.dec2a(self.up2(d3) + e2))  # (N, 2w, Z/2, Y/2, X/2)
        d1 = self.dec1b(self.dec1a(self.up1(d2) + e1))  # (N, w, Z, Y, X)
        main = self.head(d1)
        if not self.training:
            return main
        return main, self.aux1(d3), self.aux2(d2)

    def pool3_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's Pool3 output ``(N, 4w, Z/8, Y/8, X/8)`` (128 channels at the paper's width), the
        input of the classification network of the paper's section 2.3."""
        return self.pool3(self._encode(x)[2])

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first three encoder levels' features, the skips of the decoder."""
        e1 = self.conv1b(self.conv1a(x))  # (N, w, Z, Y, X)
        e2 = self.conv2b(self.conv2a(self.pool1(e1)))  # (N, 2w, Z/2, Y/2, X/2)
        e3 = self.conv3b(self.conv3a(self.pool2(e2)))  # (N, 4w, Z/4, Y/4, X/4)
        return e1, e2, e3


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` by default).

    BatchNorm running statistics are buffers, not parameters, and are never counted.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_patch(
    width: int, num_classes: int = NUM_CLASSES, patch: int = PATCH_SIZE, in_channels: int = 1
) -> int:
    """Floating-point operations of one eval-mode forward pass on a ``patch^3`` input, analytically.

    Counted as 2 x the multiply-accumulates (MACs) of every convolution and transposed convolution that
    runs in eval mode: the encoder and decoder 3^3 convolutions, the three kernel-2 stride-2 upsampling
    transposed convolutions, and the 1^3 main head. The auxiliary heads do not run in eval mode and are
    not counted. Bias additions, BatchNorm, ReLU, the residual sums and max-pooling are not counted
    (they are O(voxels x channels), negligible next to the convolutions).

    * Convolution ``Cin -> Cout``, kernel ``k^3``: ``MACs = Cin * Cout * k^3 * output voxels``.
    * Transposed convolution ``Cin -> Cout``, kernel ``k^3``: ``MACs = Cin * Cout * k^3 * input voxels``
      (every input voxel scatters a ``k^3`` block; with kernel = stride this equals
      ``Cin * Cout * output voxels``).

    Args:
        width: the network width ``w`` (channels at level 1).
        num_classes: output classes of the main head.
        patch: cubic patch edge in voxels, divisible by 8.
        in_channels: input channels.
    """
    _check_positive_int(width, "width")
    _check_positive_int(num_classes, "num_classes")
    _check_positive_int(in_channels, "in_channels")
    _check_positive_int(patch, "patch")
    if patch % DOWNSAMPLE:
        raise ValueError(f"patch must be divisible by {DOWNSAMPLE}, got {patch}")
    vox = [(patch // 2**level) ** 3 for level in range(4)]  # voxels at levels 1..4
    ch = [width * 2**level for level in range(4)]  # channels at levels 1..4
    k3 = 27

    macs = in_channels * ch[0] * k3 * vox[0] + ch[0] * ch[0] * k3 * vox[0]  # conv1a, conv1b
    for lvl in range(1, 4):  # conv{2,3,4}a and conv{2,3,4}b
        macs += (ch[lvl - 1] * ch[lvl] + ch[lvl] * ch[lvl]) * k3 * vox[lvl]
    for lvl in range(3):  # up{1,2,3} (kernel 2^3 on the coarser level's voxels) and two convs each
        macs += ch[lvl + 1] * ch[lvl] * 8 * vox[lvl + 1]
        macs += 2 * ch[lvl] * ch[lvl] * k3 * vox[lvl]
    macs += ch[0] * num_classes * vox[0]  # 1^3 main head
    return 2 * macs


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters of :class:`S4CNet`; ``build()`` returns a freshly initialised network."""

    width: int = 32
    num_classes: int = NUM_CLASSES
    in_channels: int = 1

    def build(self) -> S4CNet:
        """A new :class:`S4CNet` with these settings (training mode, random initialisation)."""
        return S4CNet(in_channels=self.in_channels, num_classes=self.num_classes, width=self.width)


#: Total downsampling factor of each architecture: a patch's extents must be divisible by it.
ARCHITECTURE_DOWNSAMPLE = {"s4c": DOWNSAMPLE, "unet3d": 16, "vnet": 16}


class UNet3D(nn.Module):
    """The 3D U-Net baseline [3]: MONAI's ``BasicUNet`` (``monai.networks.nets.BasicUNet``), 3-D.

    Feature widths ``(w, 2w, 4w, 8w, 16w, w)``, BatchNorm and ReLU as in Cicek et al. 2016, transposed
    convolutions up, concatenated skips. Differences from [3]: four poolings instead of three (so
    extents divisible by 16), two 3^3 convolutions per level at one width (not w then 2w), zero
    padding (so the output has the input's size), and a smaller width on these CPUs. Input
    ``(N, 1, Z, Y, X)``, logits ``(N, num_classes, Z, Y, X)`` in both modes (no deep supervision).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = NUM_CLASSES, width: int = 8) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet  # heavy; only the baselines need it

        w = _check_positive_int(width, "width")
        self.num_classes, self.width = num_classes, w
        self.net = BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
                             features=(w, 2 * w, 4 * w, 8 * w, 16 * w, w), act=("relu", {"inplace": True}),
                             norm=("batch", {}), upsample="deconv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VNet(nn.Module):
    """The V-Net baseline [6]: MONAI's V-Net (``monai.networks.nets.VNet``) built from its own blocks
    with the base width ``w`` as a parameter (MONAI fixes it at 16, the paper's; ``width=16`` gives
    MONAI's ``VNet`` layer for layer).

    As [6]: 5^3 convolutions, residual stages of 1, 2, 3, 3, 3 convolutions, strided 2^3 convolutions
    down, transposed up, concatenated skips, PReLU replaced by ELU (MONAI's default), dropout 0.5 in
    the deep stages. Differences from [6]: BatchNorm after every convolution (MONAI's), stage depths
    1, 2, 3, 2 down and 2, 2, 1, 1 up (MONAI's), a softmax over the classes instead of [6]'s two-class
    Dice output, and a smaller width on these CPUs. Extents divisible by 16. Input ``(N, 1, Z, Y, X)``,
    logits ``(N, num_classes, Z, Y, X)`` in both modes.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = NUM_CLASSES, width: int = 4) -> None:
        super().__init__()
        from monai.networks.nets.vnet import DownTransition, InputTransition, OutputTransition, UpTransition

        w = _check_positive_int(width, "width")
        self.num_classes, self.width = num_classes, w
        act = ("elu", {"inplace": True})
        # The attribute names are MONAI VNet's, so a width-16 state dict loads into either.
        self.in_tr = InputTransition(3, in_channels, w, act)
        self.down_tr32 = DownTransition(3, w, 1, act)
        self.down_tr64 = DownTransition(3, 2 * w, 2, act)
        self.down_tr128 = DownTransition(3, 4 * w, 3, act, dropout_prob=0.5)
        self.down_tr256 = DownTransition(3, 8 * w, 2, act, dropout_prob=0.5)
        self.up_tr256 = UpTransition(3, 16 * w, 16 * w, 2, act, dropout_prob=(0.5, 0.5))
        self.up_tr128 = UpTransition(3, 16 * w, 8 * w, 2, act, dropout_prob=(0.5, 0.5))
        self.up_tr64 = UpTransition(3, 8 * w, 4 * w, 1, act)
        self.up_tr32 = UpTransition(3, 4 * w, 2 * w, 1, act)
        self.out_tr = OutputTransition(3, 2 * w, num_classes, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out16 = self.in_tr(x)
        out32 = self.down_tr32(out16)
        out64 = self.down_tr64(out32)
        out128 = self.down_tr128(out64)
        out256 = self.down_tr256(out128)
        x = self.up_tr256(out256, out128)
        x = self.up_tr128(x, out64)
        x = self.up_tr64(x, out32)
        x = self.up_tr32(x, out16)
        return self.out_tr(x)


def build_network(architecture: str = "s4c", *, num_classes: int = NUM_CLASSES, width: int = 32,
                  in_channels: int = 1) -> nn.Module:
    """A freshly initialised segmenter of ``architecture`` (:data:`ARCHITECTURES`)."""
    nets = {"s4c": S4CNet, "unet3d": UNet3D, "vnet": VNet}
    if architecture not in nets:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return nets[architecture](in_channels=in_channels, num_classes=num_classes, width=width)


class PoolThreeClassifier(nn.Module):
    """The classification network of the paper's section 2.3 (Fig. 2) on a frozen S4C segmenter.

    The segmenter's Pool3 features ``(N, 4w, Z/8, Y/8, X/8)`` of a pancreas region of any size pass
    two 3^3 convolutions at 4w and one at 8w with stride 2, each followed by GroupNorm and ReLU, then a
    global average pool and a linear layer to two logits (normal, abnormal). Fig. 2's exact layer
    list is not in the text; this follows its description (convolutions, GroupNorm after each, a
    binary output). The segmenter is frozen: eval mode always, no gradients.

    ``forward(x)``: ``x`` normalised CT ``(N, 1, Z, Y, X)``, extents divisible by 8; logits ``(N, 2)``.
    """

    def __init__(self, segmenter: S4CNet) -> None:
        super().__init__()
        self.segmenter = segmenter
        for p in self.segmenter.parameters():
            p.requires_grad_(False)
        c = 4 * segmenter.width

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
                                 nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True))

        self.head = nn.Sequential(block(c, c), block(c, c), block(c, 2 * c, stride=2))
        self.fc = nn.Linear(2 * c, 2)

    def train(self, mode: bool = True) -> PoolThreeClassifier:
        super().train(mode)
        self.segmenter.eval()  # frozen: its BatchNorm keeps the segmentation statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f = self.segmenter.pool3_features(x)
        h = self.head(f)
        return self.fc(h.mean(dim=(2, 3, 4)))
