"""Sparse training: SET and RigL masks on the radial MLPs and equivariant linears.

Each masked weight tensor keeps a fixed share ``1 - target`` of its entries (uniform sparsity per
tensor). The run starts from a random mask at the target sparsity; every ``update_every`` steps
until ``end_fraction`` of the run, each tensor drops its ``α_t`` share of active entries with the
smallest magnitude and grows as many inactive ones: at random (SET, Mocanu et al. 2018) or where
the dense gradient is largest (RigL, Evci et al. 2020). ``α_t = α/2 (1 + cos(π t / T_end))`` decays
the drop share. Grown entries start at zero and their AdamW moments are reset. Masked entries are
zeroed after every optimiser step, so the model (and its EMA, masked when used) is exactly sparse.

What it buys: parameter count, not time. mace-torch's and macelerate's kernels are dense, so a
sparse radial MLP or linear costs the same on this CPU (see the report's ``note``); only
structured removal (:mod:`macelerate.compress`) shrinks a step.

Groups (parameter-name patterns, any model layout this package trains):

- ``radial``: ``interactions.K.conv_tp_weights.layerJ.weight`` (the radial MLPs),
- ``linear``: ``interactions.K.linear_up.weight``, ``interactions.K.linear.weight``,
  ``interactions.K.skip_tp.weight`` and ``products.K.linear.weight`` (e3nn linears, flat weights).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch

from macelerate.train.errors import TrainConfigError

GROUP_PATTERNS = {
    "radial": re.compile(r"(^|\.)interactions\.\d+\.conv_tp_weights\.layer\d+\.weight$"),
    "linear": re.compile(
        r"(^|\.)(interactions\.\d+\.(linear_up|linear|skip_tp)|products\.\d+\.linear)\.weight$"
    ),
}
"""Which parameters each sparsity group masks (matched against ``named_parameters`` names)."""

DENSE_KERNEL_NOTE = (
    "unstructured sparsity saves parameters, not time: the radial MLP and linear kernels are dense "
    "matrix products, so a step costs the same as the dense model's on this CPU"
)


@dataclass(frozen=True)
class SparsityConfig:
    """Settings of sparse training.

    Attributes:
        method: ``"set"`` (random growth) or ``"rigl"`` (growth by dense-gradient magnitude).
        target: share of each masked tensor's entries that are zero, in (0, 1).
        groups: which parameter groups are masked (:data:`GROUP_PATTERNS`).
        update_every: optimisation steps between drop/grow updates.
        drop_fraction: initial share ``α`` of active entries dropped (and regrown) per update.
        end_fraction: share of the run after which the mask is frozen.
    """

    method: Literal["set", "rigl"] = "rigl"
    target: float = 0.8
    groups: tuple[str, ...] = ("radial", "linear")
    update_every: int = 100
    drop_fraction: float = 0.3
    end_fraction: float = 0.75

    def __post_init__(self) -> None:
        problems = []
        if self.method not in ("set", "rigl"):
            problems.append(f"method (--sparse) must be set or rigl, got {self.method!r}")
        if not (isinstance(self.target, (int, float)) and 0.0 < self.target < 1.0):
            problems.append(f"target (--sparsity) must be in (0, 1), got {self.target!r}")
        unknown = sorted(set(self.groups) - set(GROUP_PATTERNS))
        if unknown or not self.groups:
            problems.append(
                f"groups (--sparse-groups) must be a non-empty subset of {sorted(GROUP_PATTERNS)}, "
                f"got {list(self.groups)}"
            )
        if not (isinstance(self.update_every, int) and self.update_every >= 1):
            problems.append(f"update_every must be an integer >= 1, got {self.update_every!r}")
        if not 0.0 <= self.drop_fraction < 1.0:
            problems.append(f"drop_fraction must be in [0, 1), got {self.drop_fraction!r}")
        if not 0.0 <= self.end_fraction <= 1.0:
            problems.append(f"end_fraction must be in [0, 1], got {self.end_fraction!r}")
        if problems:
            raise TrainConfigError("invalid sparse-training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparsityConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown SparsityConfig keys {unknown}; known: {sorted(known)}")
        data = dict(data)
        if "groups" in data:
            data["groups"] = tuple(data["groups"])
        return cls(**data)


def masked_parameter_names(module: torch.nn.Module, groups: tuple[str, ...]) -> list[str]:
    """Names of ``module``'s trainable parameters in ``groups``, in module order."""
    patterns = [GROUP_PATTERNS[group] for group in groups]
    return [
        name
        for name, parameter in module.named_parameters()
        if parameter.requires_grad and any(p.search(name) for p in patterns)
    ]


def _n_active(numel: int, target: float) -> int:
    return max(1, round(numel * (1.0 - target)))


class SparseMasks:
    """The boolean masks of one sparse run, their drop/grow schedule, and what they achieved.

    Args:
        module: the model being trained (its parameters are zeroed where masked, in place).
        config: the settings.
        total_steps: the run's length in steps (the schedule's ``T``).
        seed: seeds the initial masks and SET's growth (with the step: same after a resume).
    """

    def __init__(
        self, module: torch.nn.Module, config: SparsityConfig, *, total_steps: int, seed: int
    ) -> None:
        self.config, self.total_steps, self.seed = config, total_steps, seed
        self.names = masked_parameter_names(module, config.groups)
        if not self.names:
            raise TrainConfigError(
                f"sparse training found no parameter of the groups {list(config.groups)} in this "
                "model (hybrid attention/cartesian layers have none): choose other --sparse-groups "
                "or drop --sparse"
            )
        named = dict(module.named_parameters())
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)
        self.masks: dict[str, torch.Tensor] = {}
        for name in self.names:
            parameter = named[name]
            keep = _n_active(parameter.numel(), config.target)
            order = torch.randperm(parameter.numel(), generator=generator)
            mask = torch.zeros(parameter.numel(), dtype=torch.bool)
            mask[order[:keep]] = True
            self.masks[name] = mask.view_as(parameter).to(parameter.device)
        self.updates = 0
        self.apply(module)

    @torch.no_grad()
    def apply(self, module: torch.nn.Module) -> None:
        """Zero ``module``'s masked entries (in place)."""
        named = dict(module.named_parameters())
        for name, mask in self.masks.items():
            named[name].mul_(mask)

    def drop_share(self, step: int) -> float:
        """``α_t``: the share of active entries replaced at ``step`` (0 after the end)."""
        end = self.config.end_fraction * self.total_steps
        if step >= end or end <= 0:
            return 0.0
        return 0.5 * self.config.drop_fraction * (1.0 + math.cos(math.pi * step / end))

    def due(self, step: int) -> bool:
        """Whether the mask changes before the optimiser step that ends at ``step + 1``."""
        return step > 0 and step % self.config.update_every == 0 and self.drop_share(step) > 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> int:
        """Drop the weakest active entries and grow as many inactive ones -> entries moved.

        Call after ``backward`` (RigL reads the dense gradients) and before the optimiser step.
        """
        share = self.drop_share(step)
        named = dict(module.named_parameters())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + 31 * step + 5)
        moved = 0
        for name, mask in self.masks.items():
            parameter = named[name]
            flat_mask = mask.view(-1)
            active = int(flat_mask.sum())
            inactive = flat_mask.numel() - active
            count = min(int(share * active), inactive)
            if count == 0:
                continue
            magnitude = parameter.detach().abs().view(-1).clone()
            magnitude[~flat_mask] = math.inf
            dropped = torch.topk(magnitude, count, largest=False).indices
            if self.config.method == "rigl" and parameter.grad is not None:
                score = parameter.grad.detach().abs().view(-1).clone().float()
            else:
                score = torch.rand(flat_mask.numel(), generator=generator).to(parameter.device)
            score[flat_mask] = -math.inf  # only inactive entries grow (not the ones just dropped)
            grown = torch.topk(score, count, largest=True).indices
            flat_mask[dropped] = False
            flat_mask[grown] = True
            parameter.view(-1)[grown] = 0.0
            state = optimizer.state.get(parameter, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key].view(-1)[grown] = 0.0
            moved += count
        self.updates += 1
        self.apply(module)
        return moved

    def state_dict(self) -> dict[str, Any]:
        return {"masks": {name: mask.cpu() for name, mask in self.masks.items()},
                "updates": self.updates}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["masks"]) != set(self.masks):
            raise KeyError("sparsity state does not match the model's masked parameters")
        for name, mask in state["masks"].items():
            self.masks[name] = mask.to(device=self.masks[name].device, dtype=torch.bool)
        self.updates = int(state["updates"])


def sparsity_report(
    module: torch.nn.Module, config: SparsityConfig, *, updates: int
) -> dict[str, Any]:
    """Zero share of the masked groups in ``module`` (any layout with the same names).

    Returns: ``method``, ``target``, ``groups``, ``mask_updates``, per group ``{"parameters",
    "nonzero", "sparsity"}``, the whole model's ``parameters`` and ``nonzero``, and ``note``.
    """
    named = dict(module.named_parameters())
    per_group: dict[str, dict[str, Any]] = {}
    for group in config.groups:
        names = masked_parameter_names(module, (group,))
        total = sum(named[n].numel() for n in names)
        nonzero = sum(int((named[n].detach() != 0).sum()) for n in names)
        per_group[group] = {
            "tensors": len(names),
            "parameters": total,
            "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / total if total else 0.0,
        }
    return {
        "method": config.method,
        "target": config.target,
        "groups": per_group,
        "mask_updates": updates,
        "parameters": sum(p.numel() for p in module.parameters()),
        "nonzero": sum(int((p.detach() != 0).sum()) for p in module.parameters()),
        "note": DENSE_KERNEL_NOTE,
    }
