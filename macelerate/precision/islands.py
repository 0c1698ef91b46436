"""``PrecisionIsland``: run one submodule in its own dtype inside a model of another dtype.

An island stores its module's parameters and buffers in *storage* dtypes, computes in a *compute*
dtype, and hands its outputs on in an *output* dtype. Floating-point tensor arguments are cast on
the way in; integer tensors (edge indices), ``None`` and Python values pass through. Casts are
differentiable, so forces by autograd flow through islands unchanged in form.

When the storage dtype differs from the compute dtype (bfloat16 weights used in a float32
contraction), the parameters are upcast at each call through ``torch.func.functional_call``; the
stored module is never changed.
"""

from __future__ import annotations

from typing import Any

import torch


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast(item, dtype) for item in value)
    if isinstance(value, list):
        return [_cast(item, dtype) for item in value]
    return value


class PrecisionIsland(torch.nn.Module):
    """Wraps ``module`` so it computes in ``compute_dtype`` whatever dtype its inputs have.

    Args:
        module: the submodule (owned by the island: pass a copy if the caller keeps it).
        role: the policy field that chose the dtypes (for reports).
        compute_dtype: dtype of the inputs and of the arithmetic.
        output_dtype: dtype of the floating-point outputs.
        parameter_dtype: storage dtype of the parameters (default: ``compute_dtype``).
        buffer_dtype: storage dtype of floating-point buffers (default: ``compute_dtype``).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        role: str,
        compute_dtype: torch.dtype,
        output_dtype: torch.dtype,
        parameter_dtype: torch.dtype | None = None,
        buffer_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.role = role
        self.compute_dtype = compute_dtype
        self.output_dtype = output_dtype
        self.parameter_dtype = parameter_dtype or compute_dtype
        self.buffer_dtype = buffer_dtype or compute_dtype
        for parameter in module.parameters():
            parameter.data = parameter.data.to(self.parameter_dtype)
        for buffer_module in module.modules():
            for name, buffer in list(buffer_module.named_buffers(recurse=False)):
                if buffer is not None and buffer.is_floating_point():
                    setattr(buffer_module, name, buffer.to(self.buffer_dtype))
        self.module = module
        self._upcast: dict[str, torch.Tensor] = {}
        self._upcast_key: tuple = ()
        self._needs_upcast = (
            self.parameter_dtype != compute_dtype or self.buffer_dtype != compute_dtype
        )

    def _compute_state(self) -> dict[str, torch.Tensor]:
        """Stored tensors upcast to the compute dtype.

        Frozen weights (inference) are upcast once and reused while their storage is unchanged;
        weights that require grad are upcast at every call so the cast stays on the graph.
        """
        stored = [
            (name, tensor)
            for name, tensor in [*self.module.named_parameters(), *self.module.named_buffers()]
            if tensor.is_floating_point() and tensor.dtype != self.compute_dtype
        ]
        if any(tensor.requires_grad for _, tensor in stored):
            return {name: tensor.to(self.compute_dtype) for name, tensor in stored}
        key = tuple((tensor.data_ptr(), tensor._version) for _, tensor in stored)
        if key != self._upcast_key:
            self._upcast = {name: tensor.to(self.compute_dtype) for name, tensor in stored}
            self._upcast_key = key
        return self._upcast

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = _cast(args, self.compute_dtype)
        kwargs = {key: _cast(value, self.compute_dtype) for key, value in kwargs.items()}
        if self._needs_upcast:
            out = torch.func.functional_call(self.module, self._compute_state(), args, kwargs)
        else:
            out = self.module(*args, **kwargs)
        return _cast(out, self.output_dtype)

    def unwrap(self, dtype: torch.dtype) -> torch.nn.Module:
        """The wrapped module with every floating tensor cast to ``dtype`` (a new module)."""
        import copy

        module = copy.deepcopy(self.module)
        return module.to(dtype)

    def extra_repr(self) -> str:
        storage = f"params={self.parameter_dtype}, buffers={self.buffer_dtype}"
        return f"role={self.role}, compute={self.compute_dtype}, out={self.output_dtype}, {storage}"
