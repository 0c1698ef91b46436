"""A frozen tensor as a module, for TorchScript parts of metatomic exports.

TorchScript cannot index a Python list of buffers by a loop variable, but it can iterate a
``ModuleList``: each table or index list of a scripted kernel is kept in a :class:`FrozenTensor`.

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

import torch


class FrozenTensor(torch.nn.Module):
    """``()`` -> the tensor given at construction (a copied buffer: it follows ``.to``)."""

    values: torch.Tensor

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.register_buffer("values", values.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.values
