"""The mutable state of one training run and its step loop (used by :func:`~.loop.train`).

A :class:`TrainingRun` holds the model, AdamW, the learning-rate schedule, the EMA, the step
counter, the skipped-batch count and the history; :meth:`TrainingRun.run` steps through the
data in a ``(seed, epoch)``-seeded order, validates at every epoch end and writes the resumable
state (:mod:`macelerate.train.state`) after checking it is finite (:mod:`macelerate.train.guard`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from tqdm import tqdm

from macelerate.compress.species_rank import SpeciesProjector
from macelerate.train.augment import random_rotations, rotate_batch
from macelerate.train.config import TrainConfig
from macelerate.train.data import Batch, LabelledData
from macelerate.train.distributed import DataParallel
from macelerate.train.ema import ExponentialMovingAverage
from macelerate.train.guard import (
    gradient_norm,
    poison_gradients,
    require_finite,
    too_many_bad_batches,
)
from macelerate.train.mixed_precision import MixedPrecision
from macelerate.train.schedule import CosineSchedule
from macelerate.train.sparsity import SparseMasks
from macelerate.train.state import data_fingerprint, save_train_state
from macelerate.train.steps import batch_loss, validate

MIN_IMPROVEMENT = 1e-3
"""Relative decrease of the validation loss that counts as an improvement for early stopping."""


def _plateau(optimizer: torch.optim.Optimizer, config: TrainConfig):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience
    )


class TrainingRun:
    """Model, optimiser, schedule, EMA, step counter and history of one run."""

    def __init__(
        self,
        model: torch.nn.Module,
        train_data: LabelledData,
        val_data: LabelledData | None,
        config: TrainConfig,
        parallel: DataParallel | None = None,
        zeros: dict[str, torch.Tensor] | None = None,
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
        self.cosine = self.plateau = None
        if config.schedule == "cosine":
            self.cosine = CosineSchedule(
                peak=config.lr, minimum=config.lr * config.min_lr_ratio,
                total_steps=self.total_steps,
            )  # fmt: skip
        elif config.schedule == "plateau":
            self.plateau = _plateau(self.optimizer, config)
        self.mixed = None
        if config.autocast is not None:
            self.mixed = MixedPrecision(model, config.autocast, self.device)
        self.masks = None
        if config.sparsity is not None:  # before the EMA, which then starts from sparse weights
            self.masks = SparseMasks(
                model, config.sparsity, total_steps=self.total_steps, seed=config.seed
            )
        named = dict(model.named_parameters())
        missing = sorted(set(zeros or {}) - set(named))
        if missing:
            raise ValueError(f"zero masks for parameters the model lacks: {missing}")
        self.zeros = {named[name]: mask.to(self.device) for name, mask in (zeros or {}).items()}
        self.species = None
        if config.species_rank is not None:
            self.species = SpeciesProjector(model, config.species_rank)
        self._apply_zeros()  # before the EMA, which then starts from the zeroed weights
        self.ema = None
        if config.ema_decay is not None:
            self.ema = ExponentialMovingAverage(model, decay=config.ema_decay)
        self.step = 0
        self.bad_batches = 0
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, float] = {}
        self.fingerprint = data_fingerprint(train_data)
        if val_data is not None:
            self.fingerprint += "+" + data_fingerprint(val_data)
        self.step_seconds, self.steps_run = 0.0, 0
        self.stop_reason = "completed"
        self._apply_lr()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _apply_lr(self) -> None:
        """Give the optimiser the cosine schedule's rate for the next step."""
        if self.cosine is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cosine.lr(self.step)

    def epoch_order(self, epoch: int) -> list[int]:
        """Structure order of ``epoch``: a permutation drawn from ``(seed, epoch)`` alone."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_data), generator=generator).tolist()

    def rotated(self, batch: Batch) -> Batch:
        """``batch`` turned by rotations drawn from the seed and step (same after a resume)."""
        n_graphs = int(batch.graph["ptr"].numel()) - 1
        seed = self.config.seed * 1_000_003 + self.step + 7919 * self.parallel.rank
        rotations = random_rotations(
            n_graphs, seed=seed, dtype=batch.graph["positions"].dtype, device=self.device
        )
        return rotate_batch(batch, rotations)

    @contextmanager
    def averaged(self) -> Iterator[torch.nn.Module]:
        """Context in which the model holds the EMA weights (or its own without EMA), masked
        with sparse training."""
        with nullcontext(self.model) if self.ema is None else self.ema.averaged(self.model):
            if self.masks is not None and self.ema is not None:
                self.masks.apply(self.model)
            self._apply_zeros()
            yield self.model

    @torch.no_grad()
    def _apply_zeros(self) -> None:
        """Zero the entries the fixed zero masks hold (removed paths stay removed), and keep
        the element-dependent weights at the species rank."""
        for parameter, keep in self.zeros.items():
            parameter.mul_(keep)
        if self.species is not None:
            self.species.project()

    def _add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.epoch_sums[name] = self.epoch_sums.get(name, 0.0) + value

    def optimisation_step(self, batch: Batch) -> dict[str, float]:
        """One step on ``batch``; a NaN/inf loss or gradient skips the update (``skipped`` = 1).

        With float16 loss scaling, a finite loss whose scaled gradients overflow skips the step
        too, lowers the scale and is counted in ``MixedPrecision.overflow_steps``, not as a bad
        batch.
        """
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        mixed = self.mixed
        with nullcontext() if mixed is None else mixed.autocast():
            terms = batch_loss(self.model, batch, self.config.loss)
        finite_loss = bool(torch.isfinite(terms["total"].detach()))
        if finite_loss:
            loss = terms["total"]
            (loss if mixed is None else mixed.scaler.scale(loss)).backward()
        else:  # every rank must skip: NaN gradients reach all of them through the average
            poison_gradients(self.params)
        self.parallel.average_gradients(self.params)
        scaler = mixed.scaler if mixed is not None and mixed.scales_loss else None
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        values = {name: float(value.detach()) for name, value in terms.items()}
        skipped = not bool(torch.isfinite(gradient_norm(self.params)))
        overflow = skipped and finite_loss and scaler is not None
        if overflow and mixed is not None:
            mixed.overflow_steps += 1
        elif skipped:
            self.bad_batches += 1
            self._add({"skipped": 1.0})
        if not skipped:
            if self.masks is not None and self.masks.due(self.step):
                self.masks.update(self.model, self.optimizer, self.step)
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer)  # skips the update when it found inf/NaN
            scaler.update()
        elif not skipped:
            self.optimizer.step()
        if not skipped:
            if self.masks is not None:
                self.masks.apply(self.model)
            self._apply_zeros()
            if self.ema is not None:
                self.ema.update(self.model)
            self._add({**values, "steps": 1.0})
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._apply_lr()
        elapsed = time.perf_counter() - start
        self._add({"seconds": elapsed})
        self.step_seconds, self.steps_run = self.step_seconds + elapsed, self.steps_run + 1
        return {**values, "skipped": float(skipped and not overflow)}

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Validate (with EMA weights), step a plateau schedule, append a history record."""
        sums = self.epoch_sums
        steps = sums.get("steps", 0.0)
        train_loss = sums["total"] / steps if steps else None
        metrics: dict[str, Any] = {"val_energy_rmse": None, "val_forces_rmse": None}
        metrics["val_loss"] = None
        if self.val_data is not None:
            with self.averaged():
                metrics = validate(
                    self.model, self.val_data, batch_size=self.config.batch_size,
                    weights=self.config.loss,
                )  # fmt: skip
        if self.plateau is not None:
            monitored = metrics["val_loss"] if metrics["val_loss"] is not None else train_loss
            if monitored is not None and math.isfinite(monitored):
                self.plateau.step(monitored)
        record = {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": self.lr,
            "train_loss": train_loss,
            "train_terms": {
                name: value / steps
                for name, value in sums.items()
                if steps and name not in ("steps", "seconds", "total", "skipped")
            },
            **metrics,
            "skipped_batches": int(sums.get("skipped", 0)),
            "seconds": sums.get("seconds", 0.0),
        }
        self.history.append(record)
        self.epoch_sums = {}
        return record

    def state(self) -> dict[str, Any]:
        schedule = None
        if self.cosine is not None:
            schedule = self.cosine.state_dict()
        elif self.plateau is not None:
            schedule = self.plateau.state_dict()
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": schedule,
            "config": self.config.to_dict(),
            "data_fingerprint": self.fingerprint,
            "history": self.history,
            "epoch_sums": self.epoch_sums,
            "bad_batches": self.bad_batches,
            "sparsity": None if self.masks is None else self.masks.state_dict(),
            "mixed_precision": None if self.mixed is None else self.mixed.state_dict(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; a changed total re-anchors the cosine schedule."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if self.cosine is not None:
            stored = CosineSchedule.from_state(
                state["scheduler"], peak=self.cosine.peak, minimum=self.cosine.minimum
            )
            self.cosine = stored.extended(total_steps=self.total_steps, step=self.step)
        elif self.plateau is not None:
            self.plateau.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.epoch_sums = dict(state["epoch_sums"])
        self.bad_batches = int(state.get("bad_batches", 0))
        if self.masks is not None:
            self.masks.load_state_dict(state["sparsity"])
        if self.mixed is not None:
            self.mixed.load_state_dict(state.get("mixed_precision") or {})
        self._apply_lr()

    def save(self) -> None:
        """Write the training state (main rank), refusing NaN/inf weights or optimiser moments."""
        path = self.config.checkpoint_path
        if path and self.parallel.is_main:
            state = self.state()
            checked = {k: state[k] for k in ("model", "ema", "optimizer")}
            require_finite(checked, what=f"the training state for {path}",
                           kept=f"the previous {path} is unchanged")  # fmt: skip
            save_train_state(path, state)

    def _check_bad_batches(self, values: dict[str, float], epoch: int) -> None:
        if values["skipped"] and self.bad_batches >= self.config.max_bad_batches:
            raise too_many_bad_batches(
                count=self.bad_batches, step=self.step, epoch=epoch + 1, loss=values["total"],
                lr=self.lr, state_path=self.config.checkpoint_path,
            )  # fmt: skip

    def stalled(self) -> bool:
        """Whether the validation loss has not improved (by ``MIN_IMPROVEMENT``, relative) for
        ``early_stop_patience`` epochs."""
        patience = self.config.early_stop_patience
        losses = [r["val_loss"] for r in self.history if r.get("val_loss") is not None]
        if patience is None or len(losses) <= patience:
            return False
        return min(losses[-patience:]) >= (1.0 - MIN_IMPROVEMENT) * min(losses[:-patience])

    def run(self) -> bool:
        """Train until the last epoch, ``max_steps``, ``max_seconds`` or a stalled validation.

        Returns True if stopped before the last epoch; :attr:`stop_reason` says why.

        Raises:
            TrainingDivergedError: ``max_bad_batches`` batches were skipped, or a state to write
                holds NaN/inf.
        """
        config = self.config
        limit = self.total_steps
        if config.max_steps is not None:
            limit = min(limit, config.max_steps)
        show = config.progress and self.parallel.is_main
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not show, unit="step",
                   desc="train")  # fmt: skip
        orders: dict[int, list[int]] = {}
        started = time.perf_counter()
        self.stop_reason = "completed"
        with bar:
            while self.step < limit:
                if config.max_seconds is not None and (
                    time.perf_counter() - started >= config.max_seconds
                ):
                    self.stop_reason = "max_seconds"
                    break
                epoch, position = divmod(self.step, self.steps_per_epoch)
                if epoch not in orders:
                    orders[epoch] = self.epoch_order(epoch)
                size = config.batch_size
                chunk = orders[epoch][position * size : (position + 1) * size]
                batch = self.train_data.batch(self.parallel.share(chunk), device=self.device)
                if config.rotation_augmentation:
                    batch = self.rotated(batch)
                values = self.optimisation_step(batch)
                self._check_bad_batches(values, epoch)
                bar.update(1)
                bar.set_postfix(loss=f"{values['total']:.4g}", epoch=epoch + 1,
                                skipped=self.bad_batches)  # fmt: skip
                if self.step % self.steps_per_epoch == 0:
                    record = self.end_epoch(epoch)
                    if show:
                        bar.write(epoch_line(record))
                    self.save()
                    if self.stalled():
                        self.stop_reason = "early_stop"
                        break
                elif config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self.save()
        stopped = self.step < self.total_steps
        if stopped and self.stop_reason == "completed":
            self.stop_reason = "max_steps"
        if stopped:
            self.save()
        return stopped


def epoch_line(record: dict[str, Any]) -> str:
    """One line summarising an epoch's history record."""

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    skipped = record.get("skipped_batches", 0)
    return (
        f"epoch {record['epoch']}: loss {fmt(record['train_loss'], '.4g')}, validation "
        f"E {fmt(record['val_energy_rmse'], '.2f')} meV/atom, "
        f"F {fmt(record['val_forces_rmse'], '.1f')} meV/Å"
        + (f", {skipped} batches skipped (NaN/inf)" if skipped else "")
    )
