"""Exponential moving average (EMA) of a module's parameters, for validation and export."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class ExponentialMovingAverage:
    """Shadow copies of the trainable parameters, updated as ``s <- d s + (1 - d) p``.

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as in
    ``torch_ema`` and mace-torch), so early averages are not dominated by the initial weights.

    Args:
        module: the module whose trainable parameters are averaged (read now and on ``update``).
        decay: the long-run decay ``d`` in [0, 1).
    """

    def __init__(self, module: torch.nn.Module, *, decay: float = 0.99) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {
            name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad
        }

    def _parameters(self, module: torch.nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        named = dict(module.named_parameters())
        for name, shadow in self.shadow.items():
            yield shadow, named[name]

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move the averages towards ``module``'s current parameters."""
        weight = 1.0 - self.current_decay()
        for shadow, parameter in self._parameters(module):
            shadow.lerp_(parameter.detach(), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        """Write the averages into ``module``'s parameters (in place)."""
        for shadow, parameter in self._parameters(module):
            parameter.copy_(shadow)

    @contextmanager
    def averaged(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Temporarily load the averages into ``module``; its own values come back on exit."""
        saved = {name: p.detach().clone() for name, p in module.named_parameters()}
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for name, parameter in module.named_parameters():
                    parameter.copy_(saved[name])

    def state_dict(self) -> dict:
        """Plain data for a training-state file."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output (parameter names must match)."""
        if set(state["shadow"]) != set(self.shadow):
            raise KeyError("EMA state does not match the module's trainable parameters")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name] = value.to(self.shadow[name]).clone()
