"""Layer primitives shared by every part of the AdapNet++ family (adapnetpp.md §1, ssma-cmode.md §A.1).

BN settings, conv + BN, the "he" initialisation, BN for globally pooled maps and the fusion-layer
initialisation live here, below `backbones`, `models` and `fusion`, so the encoder, the heads and the
fusion blocks build their layers the same way and none imports another for a primitive.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# adapnetpp.md §1: moving averages with decay 0.99 (PyTorch momentum 0.01), eps 1e-5.
BN_MOMENTUM = 0.01
BN_EPS = 1e-5

# deepscene-tf.md §4: how the stride-2 layers of the encoder pad. "symmetric" is PyTorch's
# padding = (k - 1) / 2 each side; "tf_same" is TF `SAME` (floor(total / 2) before, the rest after).
PADDING_MODES = ("symmetric", "tf_same")


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


def tf_same_pad(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF `SAME` padding of one spatial axis (deepscene-tf.md §4): (before, after).

    total = max((ceil(n / s) - 1) * s + k_eff - n, 0) with k_eff = d * (k - 1) + 1; floor(total / 2) goes
    before, the rest after. E.g. n=384, k=7, s=2 -> (2, 3); n=192, k=3, s=2 -> (0, 1); n=33 -> (1, 1).
    """
    k_eff = dilation * (kernel_size - 1) + 1
    total = max((-(-size // stride) - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def _same_pads(x: Tensor, kernel_size: int, stride: int, dilation: int) -> tuple[int, int, int, int]:
    """`F.pad` amounts (left, right, top, bottom) for TF `SAME` on the last two axes of x."""
    top, bottom = tf_same_pad(x.shape[-2], kernel_size, stride, dilation)
    left, right = tf_same_pad(x.shape[-1], kernel_size, stride, dilation)
    return left, right, top, bottom


class TFSameConv2d(nn.Conv2d):
    """nn.Conv2d with TF `SAME` padding computed from the input size at run time (deepscene-tf.md §4).

    Same parameters (and state-dict keys) as an `nn.Conv2d`; the input is zero-padded with `F.pad`
    (asymmetric at stride 2) and then convolved without padding. Square kernels, strides and dilations.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs: object) -> None:
        if "padding" in kwargs:
            raise ValueError("TFSameConv2d: padding is computed at run time; do not pass it")
        super().__init__(in_channels, out_channels, kernel_size, padding=0, **kwargs)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))."""
        pads = _same_pads(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return super().forward(F.pad(x, pads))


class TFSameMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d with TF `SAME` padding (deepscene-tf.md §4); padded cells are -inf, i.e. ignored."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__(kernel_size, stride=stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, ceil(H / s), ceil(W / s))."""
        pads = _same_pads(x, int(self.kernel_size), int(self.stride), 1)
        return super().forward(F.pad(x, pads, value=float("-inf")))


def check_padding(padding: str) -> str:
    """`padding` if it is one of `PADDING_MODES`, else ValueError."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
    return padding


def strided_conv(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int, padding: str
) -> nn.Conv2d:
    """Bias-free k x k conv at `stride`: symmetric (k - 1) / 2 padding, or TF `SAME` ("tf_same")."""
    if check_padding(padding) == "tf_same":
        return TFSameConv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
    )


def strided_max_pool(kernel_size: int, *, stride: int, padding: str) -> nn.MaxPool2d:
    """k x k max-pool at `stride`: symmetric (k - 1) / 2 padding, or TF `SAME` ("tf_same")."""
    if check_padding(padding) == "tf_same":
        return TFSameMaxPool2d(kernel_size, stride)
    return nn.MaxPool2d(kernel_size, stride=stride, padding=(kernel_size - 1) // 2)


def _legacy_taps(size_in: int, size_out: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Source rows (lower, upper) and weights of the upper one for TF1 legacy bilinear along one axis."""
    src = torch.arange(size_out, dtype=torch.float32, device=like.device) * (size_in / size_out)
    lower = src.floor().long()
    upper = (lower + 1).clamp(max=size_in - 1)
    return lower, upper, (src - lower).to(like.dtype)


def resize_bilinear_tf_legacy(x: Tensor, size: tuple[int, int]) -> Tensor:
    """TF1 `resize_bilinear(align_corners=False)` without half-pixel centres (deepscene-tf.md §6).

    Output pixel i samples source position i * in / out (not PyTorch's (i + 0.5) * in / out - 0.5),
    interpolating linearly between floor and floor + 1, the latter clamped at the far edge.

    Args:
        x: (B, C, H, W).
        size: (H_out, W_out).

    Returns:
        (B, C, H_out, W_out).
    """
    (h_in, w_in), (h_out, w_out) = x.shape[-2:], size
    top, bottom, wy = _legacy_taps(h_in, h_out, x)
    left, right, wx = _legacy_taps(w_in, w_out, x)
    wy = wy.view(-1, 1)
    rows = x[..., top, :] * (1 - wy) + x[..., bottom, :] * wy
    return rows[..., left] * (1 - wx) + rows[..., right] * wx
