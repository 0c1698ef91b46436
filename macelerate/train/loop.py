"""The training loop shared by plain training, fine-tuning after pruning, and distillation.

Trainable-model contract: ``model(graph, training=..., compute_force=..., compute_stress=...)``
returns ``energy`` [G] eV, ``forces`` [N, 3] eV/Å (conservative or direct), optionally ``stress``
[G, 3, 3] eV/Å³ and ``confidence_logits`` [N, n_bins] (the module then has ``confidence_bins``,
edges in eV/Å). The module has ``r_max`` and ``atomic_numbers``, and may have ``graph_options()``
(e.g. ``{"max_neighbors": 16}``) whose items go to :func:`macelerate.build_graph`. mace-torch models
and :class:`macelerate.models.student.Student` both fit.

:func:`train` never touches the caller's model: it trains a deep copy (with fused message passing
when possible), keeps an EMA of the parameters for validation and export, writes a resumable state
file atomically, and returns an unfused copy with the averaged weights in the layout mace-torch
checkpoints use.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from ase import Atoms
from tqdm import tqdm

from macelerate._mace import quiet_model_construction
from macelerate.checks.equigrad import equigrad_norm
from macelerate.data.labels import LabelKeys
from macelerate.models.potential import Potential
from macelerate.train.config import DTYPES, TrainConfig, TrainReport
from macelerate.train.data import (
    Batch,
    LabelledData,
    mix_labels,
    model_edge_selection,
    model_graph_options,
    read_labels,
)
from macelerate.train.distributed import DataParallel, data_parallel_from_env, local_device
from macelerate.train.ema import ExponentialMovingAverage
from macelerate.train.export import fuse_all, load_trained_weights, unfused_template
from macelerate.train.losses import LossWeights, compute_loss
from macelerate.train.state import (
    check_resumable,
    data_fingerprint,
    load_train_state,
    save_train_state,
)


def training_copy(model: torch.nn.Module, config: TrainConfig) -> tuple[torch.nn.Module, int]:
    """Deep copy on ``config.device``/``dtype`` with trainable parameters; (copy, fused blocks)."""
    with quiet_model_construction():
        trainee = copy.deepcopy(model)
    trainee = trainee.to(device=config.device, dtype=DTYPES[config.dtype])
    frozen = tuple(config.frozen)
    for name, parameter in trainee.named_parameters():
        parameter.requires_grad_(not (frozen and name.startswith(frozen)))
    fused = fuse_all(trainee) if config.fuse_message_passing else 0
    return trainee.train(), fused


def forward_batch(
    model: torch.nn.Module, batch: Batch, *, training: bool, compute_stress: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Outputs on ``batch`` and the positions tensor [N, 3] they were differentiated from.

    The model gets a shallow copy of the graph with fresh positions, so the cached graph is
    never changed (mace-torch sets ``requires_grad`` on ``positions`` in place).
    """
    data = dict(batch.graph)
    positions = batch.graph["positions"].detach().clone().requires_grad_(True)
    data["positions"] = positions
    with torch.enable_grad():
        out = model(data, training=training, compute_force=True, compute_stress=compute_stress)
    return out, positions


def equigrad_norms(model: torch.nn.Module, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """[G] equigrad norms (eV) of ``model`` on ``graph``, differentiable in the parameters."""

    def energy_fn(positions: torch.Tensor, cell: torch.Tensor, shifts: torch.Tensor):
        data = dict(graph)
        data.update(positions=positions, cell=cell, shifts=shifts)
        return model(data, training=True, compute_force=False, compute_stress=False)["energy"]

    return equigrad_norm(
        energy_fn, graph["positions"].detach(), graph["cell"], graph["unit_shifts"],
        batch=graph["batch"], edge_graph=graph["batch"][graph["edge_index"][1]],
        create_graph=True,
    )  # fmt: skip


def batch_loss(
    model: torch.nn.Module, batch: Batch, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """The loss terms (:func:`compute_loss`) of ``model`` on ``batch``, ready for backward."""
    want_stress = weights.stress > 0 and batch.stress is not None
    out, positions = forward_batch(model, batch, training=True, compute_stress=want_stress)
    norms = equigrad_norms(model, batch.graph) if weights.equigrad > 0 else None
    return compute_loss(
        out, batch, weights, positions=positions,
        confidence_bins=getattr(model, "confidence_bins", None), equigrad_norms=norms,
    )  # fmt: skip


@torch.no_grad()
def _accumulate(out: dict, batch: Batch, sums: dict[str, float]) -> None:
    if batch.energy is not None:
        per_atom = (out["energy"].detach() - batch.energy) / batch.n_atoms
        sums["e2"] += float((per_atom.double() ** 2).sum())
        sums["ne"] += per_atom.numel()
    if batch.forces is not None:
        sums["f2"] += float(((out["forces"].detach() - batch.forces).double() ** 2).sum())
        sums["nf"] += batch.forces.numel()


def validate(
    model: torch.nn.Module, data: LabelledData, *, batch_size: int, weights: LossWeights
) -> dict[str, float | None]:
    """RMSE of energy per atom (meV/atom) and force components (meV/Å), and an MSE loss."""
    was_training = model.training
    model.eval()
    sums = {"e2": 0.0, "ne": 0, "f2": 0.0, "nf": 0}
    device = next(model.parameters()).device
    for batch in data.batches(batch_size, device=device):
        out, _ = forward_batch(model, batch, training=False, compute_stress=False)
        _accumulate(out, batch, sums)
    model.train(was_training)
    e_mse = sums["e2"] / sums["ne"] if sums["ne"] else None
    f_mse = sums["f2"] / sums["nf"] if sums["nf"] else None
    loss = weights.energy * (e_mse or 0.0) + weights.forces * (f_mse or 0.0)
    return {
        "val_energy_rmse": None if e_mse is None else 1e3 * math.sqrt(e_mse),
        "val_forces_rmse": None if f_mse is None else 1e3 * math.sqrt(f_mse),
        "val_loss": loss,
    }


def _labelled(
    model: torch.nn.Module,
    structures: Sequence[Atoms],
    *,
    keys: LabelKeys,
    teacher: Potential | None,
    config: TrainConfig,
    source: str,
) -> LabelledData:
    """Training data from labels, or from a teacher's predictions (mixed with labels if asked)."""
    options = {
        "graph_options": model_graph_options(model),
        "edge_selection": model_edge_selection(model),
        "dtype": DTYPES[config.dtype],
        "source": source,
    }
    if teacher is None:
        return LabelledData(structures, keys=keys, **options)
    from macelerate.train.teacher import label_structures

    labelled = label_structures(
        teacher, structures, hessian_rows=config.teacher_hessian_rows, seed=config.seed
    )
    stress = "stress" if all(atoms.pbc.all() for atoms in structures) else None
    teacher_keys = LabelKeys(energy="energy", forces="forces", stress=stress)
    data = LabelledData(labelled, keys=teacher_keys, **options)
    if config.teacher_weight < 1.0:
        data.labels = [
            mix_labels(t, read_labels(atoms, keys, index=i, source=source), config.teacher_weight)
            for i, (t, atoms) in enumerate(zip(data.labels, structures))
        ]
    return data


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(total_steps, 1), eta_min=config.lr * config.min_lr_ratio
        )
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
    return None


class _Run:
    """Mutable state of one run: model, optimiser, schedule, EMA, step counter and history."""

    def __init__(
        self,
        model: torch.nn.Module,
        train_data: LabelledData,
        val_data: LabelledData | None,
        config: TrainConfig,
        parallel: DataParallel | None = None,
    ) -> None:
        self.model, self.train_data, self.val_data, self.config = (
            model, train_data, val_data, config,
        )  # fmt: skip
        self.parallel = parallel or DataParallel()
        self.parallel.broadcast_parameters(model)
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("no parameter left to train: check TrainConfig.frozen")
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.lr, weight_decay=config.weight_decay
        )
        self.steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.scheduler = _scheduler(self.optimizer, config, self.total_steps)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = ExponentialMovingAverage(model, decay=config.ema_decay)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, float] = {}
        self.fingerprint = data_fingerprint(train_data)
        if val_data is not None:
            self.fingerprint += "+" + data_fingerprint(val_data)
        self.step_seconds, self.steps_run = 0.0, 0

    def epoch_order(self, epoch: int) -> list[int]:
        """Structure order of ``epoch``: a permutation drawn from ``(seed, epoch)`` alone."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_data), generator=generator).tolist()

    def averaged(self):
        """Context in which the model holds the EMA weights (or its own without EMA)."""
        if self.ema is None:
            return nullcontext(self.model)
        return self.ema.averaged(self.model)

    def optimisation_step(self, batch: Batch) -> dict[str, float]:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        terms = batch_loss(self.model, batch, self.config.loss)
        terms["total"].backward()
        self.parallel.average_gradients(self.params)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        if self.config.schedule == "cosine":
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        values = {name: float(value.detach()) for name, value in terms.items()}
        for name, value in {**values, "steps": 1.0}.items():
            self.epoch_sums[name] = self.epoch_sums.get(name, 0.0) + value
        elapsed = time.perf_counter() - start
        self.epoch_sums["seconds"] = self.epoch_sums.get("seconds", 0.0) + elapsed
        self.step_seconds, self.steps_run = self.step_seconds + elapsed, self.steps_run + 1
        return values

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Validate (with EMA weights), step a plateau schedule, append a history record."""
        sums = self.epoch_sums
        train_loss = sums["total"] / sums["steps"]
        metrics: dict[str, Any] = {"val_energy_rmse": None, "val_forces_rmse": None}
        metrics["val_loss"] = None
        if self.val_data is not None:
            with self.averaged():
                metrics = validate(
                    self.model, self.val_data, batch_size=self.config.batch_size,
                    weights=self.config.loss,
                )  # fmt: skip
        if self.config.schedule == "plateau":
            monitored = metrics["val_loss"]
            self.scheduler.step(train_loss if monitored is None else monitored)
        record = {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "train_loss": train_loss,
            "train_terms": {
                name: value / sums["steps"]
                for name, value in sums.items()
                if name not in ("steps", "seconds", "total")
            },
            **metrics,
            "seconds": sums["seconds"],
        }
        self.history.append(record)
        self.epoch_sums = {}
        return record

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "config": self.config.to_dict(),
            "data_fingerprint": self.fingerprint,
            "history": self.history,
            "epoch_sums": self.epoch_sums,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.epoch_sums = dict(state["epoch_sums"])

    def save(self) -> None:
        if self.config.checkpoint_path and self.parallel.is_main:
            save_train_state(self.config.checkpoint_path, self.state())

    def run(self) -> bool:
        """Train until the last epoch or ``max_steps``; True if stopped by ``max_steps``."""
        config = self.config
        limit = self.total_steps
        if config.max_steps is not None:
            limit = min(limit, config.max_steps)
        bar = tqdm(
            total=self.total_steps, initial=self.step,
            disable=not (config.progress and self.parallel.is_main),
            unit="step", desc="train",
        )  # fmt: skip
        orders: dict[int, list[int]] = {}
        while self.step < limit:
            epoch, position = divmod(self.step, self.steps_per_epoch)
            if epoch not in orders:
                orders[epoch] = self.epoch_order(epoch)
            order = orders[epoch]
            chunk = order[position * config.batch_size : (position + 1) * config.batch_size]
            share = self.parallel.share(chunk)
            values = self.optimisation_step(self.train_data.batch(share, device=self.device))
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.4g}", epoch=epoch + 1)
            if self.step % self.steps_per_epoch == 0:
                record = self.end_epoch(epoch)
                if config.progress and self.parallel.is_main:
                    bar.write(_epoch_line(record))
                self.save()
            elif config.checkpoint_every and self.step % config.checkpoint_every == 0:
                self.save()
        bar.close()
        stopped = self.step < self.total_steps
        if stopped:
            self.save()
        return stopped


def _epoch_line(record: dict[str, Any]) -> str:
    def fmt(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return (
        f"epoch {record['epoch']}: loss {record['train_loss']:.4g}, validation "
        f"E {fmt(record['val_energy_rmse'], 2)} meV/atom, "
        f"F {fmt(record['val_forces_rmse'], 1)} meV/Å"
    )


def _export_difference(
    trained: torch.nn.Module, exported: torch.nn.Module, batch: Batch
) -> tuple[float, float]:
    """Largest |ΔE| (eV) and |ΔF| (eV/Å) between two models on ``batch``."""
    trained_mode = trained.training
    trained.eval()
    a, _ = forward_batch(trained, batch, training=False, compute_stress=False)
    b, _ = forward_batch(exported, batch, training=False, compute_stress=False)
    trained.train(trained_mode)
    energy = float((a["energy"] - b["energy"]).detach().abs().max())
    forces = float((a["forces"] - b["forces"]).detach().abs().max())
    return energy, forces


def train(
    model: torch.nn.Module,
    train_structures: Sequence[Atoms],
    *,
    config: TrainConfig | None = None,
    val_structures: Sequence[Atoms] | None = None,
    keys: LabelKeys | None = None,
    teacher: Potential | None = None,
) -> tuple[torch.nn.Module, TrainReport]:
    """Train a copy of ``model`` on labelled structures (or a teacher's predictions).

    Args:
        model: a module following the contract in the module docstring (never modified).
        train_structures: training structures carrying the labels named by ``keys``.
        config: settings (default :class:`TrainConfig`).
        val_structures: validation structures; default: ``config.val_fraction`` of the training
            structures, held out at random with ``config.seed``.
        keys: label names (default ``LabelKeys()``: ``energy`` and ``forces``).
        teacher: if given, targets are its predictions (see ``TrainConfig.teacher_weight``).

    Returns:
        The trained model (unfused mace-torch layout, EMA weights, eval mode, on
        ``config.device`` in ``config.dtype``) and a :class:`TrainReport`.

    Raises:
        DataFileError: a structure lacks a requested label.
        UnknownElementError: a structure holds an element the model does not know.
        TrainStateError: ``resume`` with a state file from other settings or data.
    """
    config = config or TrainConfig()
    if local_device(config.device) != config.device:  # torchrun: one GPU per local rank
        config = replace(config, device=local_device(config.device))
    keys = keys or LabelKeys()
    started = time.perf_counter()
    template = unfused_template(model).to(device=config.device, dtype=DTYPES[config.dtype])
    trainee, fused = training_copy(model, config)
    train_data = _labelled(
        trainee, train_structures, keys=keys, teacher=teacher, config=config,
        source="training structures",
    )  # fmt: skip
    if val_structures is None:
        train_data, val_data = train_data.split(config.val_fraction, seed=config.seed)
    else:
        val_data = _labelled(
            trainee, val_structures, keys=keys, teacher=teacher, config=config,
            source="validation structures",
        )  # fmt: skip
    parallel = data_parallel_from_env(device=config.device, batch_size=config.batch_size)
    run = _Run(trainee, train_data, val_data, config, parallel)
    resumed_from = None
    if config.resume:
        state = load_train_state(config.checkpoint_path)
        check_resumable(
            state, config=config.to_dict(), fingerprint=run.fingerprint,
            path=config.checkpoint_path,
        )  # fmt: skip
        run.restore(state)
        resumed_from = run.step
    stopped = run.run()
    probe = (val_data or train_data).batch([0], device=run.device)
    with run.averaged():
        exported = load_trained_weights(template, trainee)
        energy_diff, force_diff = _export_difference(trainee, exported, probe)
    report = TrainReport(
        history=run.history,
        steps=run.step,
        epochs_completed=run.step // run.steps_per_epoch,
        n_train=len(train_data),
        n_val=0 if val_data is None else len(val_data),
        n_parameters=sum(p.numel() for p in run.params),
        fused_blocks=fused,
        seconds=time.perf_counter() - started,
        seconds_per_step=run.step_seconds / max(run.steps_run, 1),
        resumed_from_step=resumed_from,
        stopped_at_max_steps=stopped,
        export_max_energy_diff=energy_diff,
        export_max_force_diff=force_diff,
    )
    return exported, report
