"""Layer primitives shared by every part of the AdapNet++ family (adapnetpp.md §1, ssma-cmode.md §A.1).

BN settings, conv + BN, the "he" initialisation, BN for globally pooled maps and the fusion-layer
initialisation live here, below `backbones`, `models` and `fusion`, so the encoder, the heads and the
fusion blocks build their layers the same way and none imports another for a primitive.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import Tensor, nn
from torch.nn import functional as F

# adapnetpp.md §1: moving averages with decay 0.99 (PyTorch momentum 0.01), eps 1e-5.
BN_MOMENTUM = 0.01
BN_EPS = 1e-5


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the AdapNet++ settings (§1): momentum 0.01, eps 1e-5, gamma 1, beta 0."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    dilation: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """Conv (no bias, stride 1, symmetric "same" padding) -> BN [-> ReLU], as in §1.

    Children are named `conv`, `bn` and (optionally) `relu`.
    """
    padding = (kernel_size - 1) // 2 * dilation
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        bn=batch_norm(out_channels),
    )
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


def init_he_(module: nn.Module) -> None:
    """Apply the "he" initialisation of §1 to every conv / transposed conv inside `module`, in place.

    Weights ~ normal(0, std) truncated (re-drawn in TF) at +-2 std, std = sqrt(2 / (k * k * C_in)); for a
    transposed conv C_in is its number of *input* maps. BN layers get gamma 1, beta 0 and fresh
    running statistics.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            kh, kw = m.kernel_size
            fan_in = kh * kw * m.in_channels // m.groups
            std = math.sqrt(2.0 / fan_in)
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d for globally pooled (B, C, 1, 1) maps that also trains at batch size 1.

    §5 batch-size caveat: on a 1x1 map the batch statistics are over B values only. With B = 1 the
    original normalises every channel to beta (zero variance) and PyTorch raises in training mode.
    Here a training batch holding one value per channel is normalised with the *running* statistics,
    which it leaves unchanged (gamma and beta still receive gradients); every other case is plain BN.
    The SSMA decoder gates (ssma-cmode.md §A.3) have the same caveat and reuse this class.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> same shape."""
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


BIAS_INIT = 0.01  # ssma-cmode.md §A.1 and §B.1: every bias of the fusion layers starts at 0.01


def init_fusion_(module: nn.Module) -> None:
    """Initialise freshly built fusion layers in place: He weights, biases 0.01 (§A.1, §B.1).

    Convs, transposed convs and BN layers follow the AdapNet++ "he" rule (`init_he_`, adapnetpp.md §1);
    linear layers (CMoDE gates) get the same truncated normal with std sqrt(2 / in_features). Every bias
    is then set to 0.01.

    Args:
        module: Root of the layers to initialise (included).
    """
    init_he_(module)
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            std = math.sqrt(2.0 / layer.in_features)
            nn.init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and layer.bias is not None:
            nn.init.constant_(layer.bias, BIAS_INIT)
