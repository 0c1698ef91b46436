"""Settings of ``macelerate compress`` (:func:`macelerate.pipeline.compress.compress`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from macelerate.errors import MacelerateError


class CompressConfigError(MacelerateError, ValueError):
    """A compress setting is out of range or a needed one is missing."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the teacher explores the user's system.

    Attributes:
        temperatures: K; one Langevin run per start structure and temperature.
        md_steps: steps of each run.
        interval: steps between kept snapshots.
        timestep_fs: fs; ``None``: 0.5 with hydrogen, 1 up to argon, else 2.
        friction_per_fs: Langevin friction, 1/fs.
        n_rattled: Gaussian-rattled copies of each start structure (training split only).
        rattle_std: Å per component.
        n_strained: randomly strained copies of each periodic start structure (training only).
        max_strain: largest strain component of a strained copy.
        gap: snapshots dropped on each side of a split boundary inside a trajectory, so no
            snapshot has a near-duplicate in another split.
        fractions: (train, validation, test) shares of each trajectory's snapshots, taken as
            consecutive segments in that order.
    """

    temperatures: tuple[float, ...] = (300.0, 600.0)
    md_steps: int = 600
    interval: int = 10
    timestep_fs: float | None = None
    friction_per_fs: float = 0.01
    n_rattled: int = 10
    rattle_std: float = 0.04
    n_strained: int = 5
    max_strain: float = 0.02
    gap: int = 1
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class CompressConfig:
    """What ``compress`` aims for and how much it may spend.

    Attributes:
        target_speedup: the student must be at least this many times faster than the teacher
            on the user's structure (both run by macelerate, ``speed_dtype``); ``None``: no
            speed target (then ``max_force_error_ratio`` or ``max_force_rmse_mev`` is needed).
        max_force_error_ratio: the student's force RMSE against the reference labels may be at
            most this multiple of the teacher's; needs reference data.
        max_force_rmse_mev: the student's force RMSE against the teacher, meV/Å, on the
            validation split (a target that needs no reference data).
        budget_minutes: wall time for the whole run (sampling, labelling, ladder, training,
            validation); training gets what the other stages leave.
        speed_dtype: precision in which speeds are measured and the student is saved for MD.
        speed_margin: a candidate counts as fast enough when its untrained timing beats
            ``target_speedup * speed_margin`` (timings on a busy 2-core machine wander).
        threads: torch threads for timings (``None``: torch's default).
        batch_size, lr: training settings of every candidate (MSE loss, EMA, cosine).
        patience: epochs without validation improvement before a candidate's training stops.
        timing_repeats: interleaved timing rounds (ladder and validation).
        validation_md_steps: steps of each validation MD run (NVE drift; RDFs of teacher and
            student Langevin MD).
        seed: seed of sampling, splits and initial weights.
        export_metatomic: also write the chosen student as a metatomic model (in
            ``speed_dtype``; skipped, with the reason, when metatomic is not installed).
        sampling: see :class:`SamplingConfig`.
    """

    target_speedup: float | None = 10.0
    max_force_error_ratio: float | None = None
    max_force_rmse_mev: float | None = None
    budget_minutes: float = 90.0
    speed_dtype: str = "float32"
    speed_margin: float = 1.05
    threads: int | None = None
    batch_size: int = 2
    lr: float = 1e-2
    patience: int = 8
    timing_repeats: int = 7
    validation_md_steps: int = 200
    seed: int = 0
    export_metatomic: bool = True
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        problems = [f"{name} must be {rule}, got {value!r}" for name, rule, value in _broken(self)]
        if self.target_speedup is None and self.accuracy_target is None:
            problems.append(
                "no target: give --target-speedup, --max-force-error-ratio (with "
                "--reference-data) or --max-force-rmse"
            )
        if self.max_force_error_ratio is not None and self.max_force_rmse_mev is not None:
            problems.append("give one accuracy target: --max-force-error-ratio or --max-force-rmse")
        if problems:
            raise CompressConfigError("invalid compress settings: " + "; ".join(problems))

    @property
    def accuracy_target(self) -> str | None:
        """``"ratio"``, ``"rmse"`` or ``None`` (speed target only)."""
        if self.max_force_error_ratio is not None:
            return "ratio"
        return "rmse" if self.max_force_rmse_mev is not None else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressConfig:
        data = dict(data)
        sampling = dict(data.pop("sampling", {}))
        for key in ("temperatures", "fractions"):
            if key in sampling:
                sampling[key] = tuple(sampling[key])
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: v for k, v in data.items() if k in known}, sampling=SamplingConfig(**sampling)
        )


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _broken(c: CompressConfig) -> list[tuple[str, str, Any]]:
    s = c.sampling
    checks = [
        ("target_speedup", "> 1 or None", c.target_speedup,
         c.target_speedup is None or (_positive(c.target_speedup) and c.target_speedup > 1)),
        ("max_force_error_ratio", ">= 1 or None", c.max_force_error_ratio,
         c.max_force_error_ratio is None
         or (_positive(c.max_force_error_ratio) and c.max_force_error_ratio >= 1)),
        ("max_force_rmse_mev", "> 0 or None", c.max_force_rmse_mev,
         c.max_force_rmse_mev is None or _positive(c.max_force_rmse_mev)),
        ("budget_minutes", "> 0", c.budget_minutes, _positive(c.budget_minutes)),
        ("speed_dtype", "float32 or float64", c.speed_dtype,
         c.speed_dtype in ("float32", "float64")),
        ("batch_size", "an integer >= 1", c.batch_size,
         isinstance(c.batch_size, int) and c.batch_size >= 1),
        ("lr", "> 0", c.lr, _positive(c.lr)),
        ("patience", "an integer >= 1", c.patience,
         isinstance(c.patience, int) and c.patience >= 1),
        ("timing_repeats", "an integer >= 1", c.timing_repeats,
         isinstance(c.timing_repeats, int) and c.timing_repeats >= 1),
        ("validation_md_steps", "an integer >= 2", c.validation_md_steps,
         isinstance(c.validation_md_steps, int) and c.validation_md_steps >= 2),
        ("temperatures", "non-empty, each > 0 K", s.temperatures,
         len(s.temperatures) > 0 and all(_positive(t) for t in s.temperatures)),
        ("md_steps", "an integer >= interval", s.md_steps,
         isinstance(s.md_steps, int) and s.md_steps >= s.interval >= 1),
        ("rattle_std", ">= 0", s.rattle_std, s.rattle_std >= 0),
        ("max_strain", "in [0, 0.2]", s.max_strain, 0 <= s.max_strain <= 0.2),
        ("fractions", "three shares > 0 summing to 1", s.fractions,
         len(s.fractions) == 3 and all(f > 0 for f in s.fractions)
         and abs(sum(s.fractions) - 1) < 1e-6),
    ]  # fmt: skip
    return [(name, rule, value) for name, rule, value, ok in checks if not ok]
