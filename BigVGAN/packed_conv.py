"""``Conv1d`` / ``ConvTranspose1d`` whose CPU inference runs on a weight pre-packed once for oneDNN.

``F.conv1d`` on CPU reorders the weight into oneDNN's blocked layout on every call; for the
generator's 768/384-channel layers that is tens of MB of memory traffic per call, against a
few-hundred-frame input. After ``BigVGAN.remove_weight_norm()`` the weights are constant, so
``BigVGAN.pack_convolutions()`` lets each layer reorder its weight once (the same oneDNN convolution
that ``torch.compile``'s weight freezing uses) and keep it until the weight changes. Outputs equal
``F.conv1d`` to float rounding; state_dict keys and training are untouched (the packed path runs
only without autograd, on CPU, in float32, on a plain ``weight`` parameter).

Cost: a second copy of every packed weight (~0.4 GB for the full 22 kHz generator).
Speed: ``bench/vocoder.py`` (rows ``ours+pack``).
"""

from __future__ import annotations

import torch
from torch import nn


def packing_available() -> bool:
    """oneDNN is built in and exposes the pre-packed convolution ops (a private but long-standing API)."""
    ops = torch.ops.mkldnn
    names = ("_reorder_convolution_weight", "_convolution_pointwise", "_reorder_convolution_transpose_weight",
             "_convolution_transpose_pointwise")
    return torch.backends.mkldnn.is_available() and all(hasattr(ops, n) for n in names)


class _Packed:
    """Mixin for ``nn.Conv1d`` / ``nn.ConvTranspose1d``: the cached packing and when to use it."""

    packed: bool = False
    _cache: tuple | None = None

    def __getstate__(self) -> dict:
        # the packed weight is an opaque oneDNN tensor: copies and pickles rebuild it on first use
        state = super().__getstate__()
        return {**state, "_cache": None}

    def _use_packed(self, x: torch.Tensor) -> bool:
        return (self.packed and x.device.type == "cpu" and x.dtype == torch.float32 and self.groups == 1
                and isinstance(self.weight, nn.Parameter) and self.padding_mode == "zeros"
                and isinstance(self.padding, tuple)
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)))

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        # inference tensors (weights made under torch.inference_mode) have no version counter: for them
        # only a replaced tensor is noticed; after changing one in place, call pack_convolutions() again
        key = (w.data_ptr(), -1 if w.is_inference() else w._version, tuple(w.shape))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._pack(w.detach().unsqueeze(2), [x.shape[0], x.shape[1], 1, x.shape[2]]))
        return self._cache[1]


class Conv1d(_Packed, nn.Conv1d):
    """``nn.Conv1d`` (same parameters and keys) with an optional pre-packed CPU inference path.

    x (B, C_in, T) -> (B, C_out, T_out). ``packed = True`` enables the path; the packed weight is
    rebuilt whenever the weight tensor is replaced or modified in place (its version counter moves).
    """

    def _pack(self, w: torch.Tensor, input_size: list[int]) -> torch.Tensor:
        # (C_out, C_in, 1, K): a 2-D kernel of height 1; input_size only guides oneDNN's choice of layout
        return torch.ops.mkldnn._reorder_convolution_weight(
            w, [0, self.padding[0]], [1, self.stride[0]], [1, self.dilation[0]], 1, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._use_packed(x):
            return super().forward(x)
        y = torch.ops.mkldnn._convolution_pointwise(
            x.unsqueeze(2), self._packed_weight(x), self.bias, [0, self.padding[0]], [1, self.stride[0]],
            [1, self.dilation[0]], 1, "none", [], "")
        return y.squeeze(2)


class ConvTranspose1d(_Packed, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with the same optional pre-packed CPU inference path (upsampling layers).

    x (B, C_in, T) -> (B, C_out, (T - 1) * stride - 2 * padding + kernel_size + output_padding).
    """

    def _pack(self, w: torch.Tensor, input_size: list[int]) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_convolution_transpose_weight(
            w, [0, self.padding[0]], [0, self.output_padding[0]], [1, self.stride[0]], [1, self.dilation[0]], 1,
            input_size)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not self._use_packed(x):
            return super().forward(x, output_size)
        y = torch.ops.mkldnn._convolution_transpose_pointwise(
            x.unsqueeze(2), self._packed_weight(x), self.bias, [0, self.padding[0]], [0, self.output_padding[0]],
            [1, self.stride[0]], [1, self.dilation[0]], 1, "none", [], "")
        return y.squeeze(2)
