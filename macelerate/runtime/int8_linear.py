"""A linear map stored as int8 weights with one float scale per output (weight-only quantisation).

``y = x @ (q * s[:, None]).T + b`` with ``q`` [out, in] int8 in [-127, 127] and ``s`` [out] the
per-output scale ``max|W_row| / 127``. Float32 (and 16-bit) inputs on CPU run PyTorch's int8
weight kernel (``torch._weight_int8pack_mm``); other dtypes and devices multiply by the
dequantised matrix. The backward pass (forces) always uses the dequantised matrix, so forces stay
the exact gradient of the (quantised) energy.
"""

from __future__ import annotations

import torch

INT8_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Input dtypes ``torch._weight_int8pack_mm`` accepts on CPU."""


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes [out, in] int8, scales [out] float64)`` of a float matrix, symmetric per row."""
    weight = weight.detach().double()
    scales = weight.abs().amax(dim=1) / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scales


class _Int8Matmul(torch.autograd.Function):
    """``x @ W.T`` by the int8 weight kernel; the input gradient by the dequantised ``W``."""

    @staticmethod
    def forward(ctx, x, codes, scales, dequantized):
        ctx.save_for_backward(dequantized)
        return torch._weight_int8pack_mm(x, codes, scales)

    @staticmethod
    def backward(ctx, grad_out):
        (dequantized,) = ctx.saved_tensors
        return grad_out @ dequantized, None, None, None


class Int8Linear(torch.nn.Module):
    """Drop-in for a linear map ``x [n, in] -> [n, out]`` with int8 weights.

    Args:
        weight: [out, in] float matrix to quantise.
        bias: [out] or None.
    """

    codes: torch.Tensor  # [out, in] int8
    scales: torch.Tensor  # [out] float
    dequantized: torch.Tensor  # [out, in] float, codes * scales
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        codes, scales = quantize_rows(weight)
        dtype = weight.dtype
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales.to(dtype))
        self.register_buffer("dequantized", (codes.double() * scales[:, None]).to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, out] = x [n, in] @ dequantised weights.T (+ bias)."""
        if x.device.type == "cpu" and x.dtype in INT8_KERNEL_DTYPES and x.dim() == 2:
            weights = self.dequantized.to(x.dtype)
            out = _Int8Matmul.apply(x.contiguous(), self.codes, self.scales.to(x.dtype), weights)
        else:
            out = x @ self.dequantized.to(x.dtype).T
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        out_features, in_features = self.codes.shape
        return f"in={in_features}, out={out_features}, int8 weights, bias={self.bias is not None}"
