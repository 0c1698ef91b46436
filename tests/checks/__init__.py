"""Tests of macelerate.checks, and a deliberately broken model they share."""

from __future__ import annotations

import torch


class Tilted(torch.nn.Module):
    """A MACE plus the non-invariant energy ``strength * Σ_i x_i²`` (x coordinates).

    Forces get the matching term, then are multiplied by ``force_scale`` (1: consistent forces).
    """

    def __init__(
        self, inner: torch.nn.Module, *, strength: float = 0.05, force_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.inner = inner
        self.strength = strength
        self.force_scale = force_scale
        self.register_buffer("r_max", inner.r_max.clone())
        self.register_buffer("atomic_numbers", inner.atomic_numbers.clone())
        self.heads = inner.heads

    def forward(self, data, training=False, compute_force=True, compute_stress=False, **kw):
        out = dict(self.inner(data, training=training, compute_force=compute_force,
                              compute_stress=compute_stress, **kw))  # fmt: skip
        x = data["positions"][:, 0]
        extra = torch.zeros_like(out["energy"]).index_add(0, data["batch"], self.strength * x**2)
        out["energy"] = out["energy"] + extra
        if compute_force:
            forces = out["forces"].detach().clone()
            forces[:, 0] -= 2 * self.strength * x.detach()
            out["forces"] = self.force_scale * forces
        return out


class Poisoned(torch.nn.Module):
    """A MACE whose energies and forces come out NaN (as a diverged model's would)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("r_max", inner.r_max.clone())
        self.register_buffer("atomic_numbers", inner.atomic_numbers.clone())
        self.heads = inner.heads

    def forward(self, data, training=False, compute_force=True, compute_stress=False, **kw):
        out = dict(self.inner(data, training=training, compute_force=compute_force,
                              compute_stress=compute_stress, **kw))  # fmt: skip
        for key in ("energy", "forces", "stress", "node_energy"):
            if out.get(key) is not None:
                out[key] = out[key] * float("nan")
        return out
