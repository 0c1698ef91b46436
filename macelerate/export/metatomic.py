"""``export_metatomic``: write a metatomic ``AtomisticModel`` (for LAMMPS, i-PI, ASE, ... through
metatomic), checked with metatomic-ase against :class:`macelerate.Calculator` before it is moved
into place.

The exported module (:class:`~macelerate.export._metatomic_module.MaceMetatomicModule`) builds
mace-torch's input from each metatomic ``System`` and its full neighbour list (cutoff ``r_max``;
``r_max + 2 * cap_width`` for a smooth-cap student, whose cap runs inside the compiled model)
and returns the energy; the engine takes forces and stress by autograd. The model inside is the
plain mace-torch model :func:`~macelerate.export.mace_file.plain_mace_module` gives (so anything a
mace file cannot hold is refused here too), with macelerate's fused convolution in its
interactions (exact, :mod:`~macelerate.export._metatomic_conv`), compiled with e3nn's
TorchScript helper as mace-torch does for LAMMPS. Students with direct heads (node heads, or
edge heads whose pair forces are built from the export's graph, with the smooth-cap weights
when the student has a cap) are exported with their backbone's energy plus
``non_conservative_force`` (and ``non_conservative_stress``) outputs; engines use those only
when asked (``MetatomicCalculator(non_conservative=True)``).

Needs ``metatomic-torch`` and ``metatomic-ase`` (``pip install 'macelerate[test]'``, or the two
packages).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from macelerate._mace import import_mace, model_construction
from macelerate._version import __version__
from macelerate.atomic_io import write_atomically
from macelerate.export.mace_file import check_dtype, plain_mace_module, smooth_cap_change
from macelerate.export.report import Agreement, ExportError, ExportReport
from macelerate.export.source import read_source
from macelerate.export.verify import (
    FORCE_TOLERANCE,
    check_agreement,
    compare,
    probe_structures,
)
from macelerate.graph.smooth_cap import SmoothCapRadialEmbedding

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

INSTALL_HINT = "pip install metatomic-torch metatomic-ase"
MACE_REFERENCES = {
    "architecture": ["https://arxiv.org/abs/2206.07697"],
    "implementation": ["https://github.com/ACEsuit/mace"],
}


def check_installed() -> None:
    """Refuse with one message when metatomic-torch or metatomic-ase is missing.

    Raises:
        ExportError: naming the install command.
    """
    missing = [
        name
        for name, module in (
            ("metatomic-torch", "metatomic.torch"),
            ("metatomic-ase", "metatomic_ase"),
        )
        if importlib.util.find_spec(module.split(".")[0]) is None
    ]
    if missing:
        raise ExportError(f"metatomic export needs {' and '.join(missing)}: {INSTALL_HINT}")


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` (owned) with its e3nn / mace-torch parts compiled to TorchScript."""
    import_mace()
    from e3nn.util import jit

    with model_construction():
        return jit.compile(module)


@dataclasses.dataclass(frozen=True)
class _Parts:
    """What goes into the export: the mace-torch model, a student's heads, what changed."""

    mace: torch.nn.Module
    force_head: Any = None
    stress_head: Any = None
    confidence: Any = None
    changes: tuple[str, ...] = ()
    edge_selection: dict[str, Any] | None = None  # a smooth-capped student's (see Student)


CONFIDENCE_OUTPUT = "macelerate::force_confidence"
"""The per-atom output of a student's confidence head: expected force error in eV/Å."""


def _parts(source: torch.nn.Module, *, allow_uncapped: bool) -> _Parts:
    """The parts of ``source`` to put into the export.

    A smooth cap stays inside the model (its thresholds are searched in TorchScript); a hard cap
    is dropped only with ``allow_uncapped``; a confidence head becomes the per-atom output
    :data:`CONFIDENCE_OUTPUT`; a hybrid student's attention and Cartesian layers are compiled as
    they are (:mod:`macelerate.models.scalar_blocks`).
    """
    from macelerate.models.student import Student, student_is_hybrid

    if not isinstance(source, Student):
        mace, changes = plain_mace_module(source, allow_uncapped=allow_uncapped)
        return _Parts(mace, changes=changes)
    confidence = source.confidence
    notes = (
        [] if confidence is None
        else [f"confidence head as the per-atom output {CONFIDENCE_OUTPUT} (eV/Å)"]
    )  # fmt: skip
    direct = (source.force_head, source.stress_head) != (None, None)
    hybrid = student_is_hybrid(source)
    if not direct and not hybrid:
        mace, changes = plain_mace_module(
            source, allow_uncapped=allow_uncapped, keep_smooth_cap=True
        )
        changes = tuple(c for c in changes if not c.startswith("confidence head left out"))
        return _Parts(
            mace, confidence=confidence, changes=(*changes, *notes),
            edge_selection=source.edge_selection(),
        )  # fmt: skip
    config = source.config
    hard_cap = config.max_neighbors is not None and not config.smooth_cap
    if hard_cap and not allow_uncapped:
        raise ExportError(
            f"this student has a hard neighbour cap of {config.max_neighbors}, which metatomic "
            "engines do not build; pass allow_uncapped=True (--allow-uncapped) to export"
        )
    if direct:
        notes.insert(0, "direct-head forces / stress are the non_conservative_force / _stress "
                     "outputs")  # fmt: skip
    if hybrid:
        notes.insert(0, f"layers {'/'.join(config.layer_kinds)} compiled as macelerate's modules")
    if config.smooth_cap:
        notes.append(smooth_cap_change(config))
    elif hard_cap:
        notes.append(f"neighbour cap of {config.max_neighbors} dropped")
    return _Parts(
        source.backbone, source.force_head, source.stress_head, confidence, tuple(notes),
        source.edge_selection(),
    )  # fmt: skip


def neighbor_cutoff(mace: torch.nn.Module) -> float:
    """The neighbour-list cutoff in Å ``mace`` needs: ``r_max``, + 2 × width with a smooth cap
    (its thresholds count neighbours that far)."""
    described: Any = mace  # r_max: a buffer; radial_embedding: a module
    embedding = described.radial_embedding
    extra = 2.0 * embedding.width if isinstance(embedding, SmoothCapRadialEmbedding) else 0.0
    return float(described.r_max) + extra


def build_atomistic_model(
    mace: torch.nn.Module,
    *,
    dtype: torch.dtype,
    force_head: Any = None,
    stress_head: Any = None,
    confidence: Any = None,
    head: str | None = None,
    name: str = "macelerate export",
    changes: tuple[str, ...] = (),
    edge_selection: dict[str, Any] | None = None,
) -> Any:
    """The metatomic ``AtomisticModel`` running copies of ``mace`` (and a student's heads).

    ``edge_selection``: a smooth-capped student's (:meth:`~macelerate.models.student.Student.
    edge_selection`); the exported module then drops the edges of weight 0 before the model
    runs, as macelerate does.

    Raises:
        ExportError: an unknown ``head``.
    """
    from metatomic.torch import AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput

    from macelerate.export._metatomic_conv import fuse_for_export, takes_slot_layout
    from macelerate.export._metatomic_heads import ScriptableConfidenceHead
    from macelerate.export._metatomic_module import MaceMetatomicModule
    from macelerate.models.edge_heads import EdgeForceHead

    heads = list(getattr(mace, "heads", None) or ["default"])
    if head is not None and head not in heads:
        raise ExportError(f"head {head!r} is not one of the model's heads {heads}")
    described: Any = mace  # r_max, atomic_numbers: buffers; interactions: a ModuleList
    atomic_numbers = [int(z) for z in described.atomic_numbers]
    r_max = float(described.r_max)
    cutoff = neighbor_cutoff(mace)
    n_layers = len(described.interactions)
    backbone = _cast_copy(mace, dtype)
    fuse_for_export(backbone)  # exact: macelerate's fused convolution, compiled
    slot_layout = not isinstance(force_head, EdgeForceHead) and takes_slot_layout(backbone)
    module = MaceMetatomicModule(
        _compiled(backbone),
        atomic_numbers,
        cutoff,
        heads.index(head or heads[0]),
        **_scriptable_heads(mace, force_head, stress_head, dtype),
        confidence=None if confidence is None else _compiled(
            ScriptableConfidenceHead(_cast_copy(confidence, dtype))
        ),
        cap=None if edge_selection is None else (
            int(edge_selection["max_neighbors"]), float(edge_selection["width"]),
            float(edge_selection["cutoff"]) + float(edge_selection["width"]),
            float(edge_selection["keep_within"]),
        ),
        slot_layout=slot_layout,
    ).eval()  # fmt: skip
    outputs = {"energy": ModelOutput(unit="eV", sample_kind="atom")}
    if force_head is not None:
        outputs["non_conservative_force"] = ModelOutput(unit="eV/Angstrom", sample_kind="atom")
    if stress_head is not None:
        outputs["non_conservative_stress"] = ModelOutput(unit="eV/Angstrom^3", sample_kind="system")
    if confidence is not None:
        outputs[CONFIDENCE_OUTPUT] = ModelOutput(unit="eV/Angstrom", sample_kind="atom")
    capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=atomic_numbers,
        interaction_range=n_layers * cutoff,  # message passing: each layer reaches a cutoff
        length_unit="angstrom",
        supported_devices=["cuda", "cpu"],
        dtype=str(dtype).removeprefix("torch."),
    )
    metadata = ModelMetadata(
        name=name,
        description=f"MACE ({n_layers} layers, r_max {r_max} Å) exported by macelerate",
        references=MACE_REFERENCES,
        extra={"macelerate-version": __version__, "macelerate-changes": "; ".join(changes)},
    )
    return AtomisticModel(module, metadata, capabilities)


def _scriptable_heads(
    mace: torch.nn.Module, force_head: Any, stress_head: Any, dtype: torch.dtype
) -> dict[str, Any]:
    """Keyword arguments of ``MaceMetatomicModule`` for a student's direct heads, compiled."""
    from macelerate.export._metatomic_heads import (
        ScriptableEdgeHeads,
        ScriptableForceHead,
        ScriptableStressHead,
    )
    from macelerate.models.edge_heads import EdgeForceHead

    if isinstance(force_head, EdgeForceHead):
        embedding: Any = getattr(mace, "radial_embedding", None)
        cap: dict[str, Any] = (
            {"max_neighbors": embedding.max_neighbors, "width": embedding.width,
             "ceiling": embedding.cutoff + embedding.width}
            if isinstance(embedding, SmoothCapRadialEmbedding) else {}
        )  # fmt: skip
        edge_heads = ScriptableEdgeHeads(
            _cast_copy(force_head, dtype), virial_stress=stress_head is not None, **cap
        )
        return {"edge_heads": _compiled(edge_heads), "edge_stress": stress_head is not None}
    return {
        "force_head": None if force_head is None else _compiled(
            ScriptableForceHead(_cast_copy(force_head, dtype))
        ),
        "stress_head": None if stress_head is None else _compiled(
            ScriptableStressHead(_cast_copy(stress_head, dtype))
        ),
    }  # fmt: skip


def _cast_copy(module: ModuleT, dtype: torch.dtype) -> ModuleT:
    with model_construction():
        return copy.deepcopy(module).to(device="cpu", dtype=dtype).eval()


def export_metatomic(
    model: str | Path | torch.nn.Module,
    out: str | Path,
    *,
    dtype: str = "float64",
    head: str | None = None,
    allow_uncapped: bool = False,
    radial: str = "exact",
) -> ExportReport:
    """Write ``model`` as a metatomic model file, verified with metatomic-ase first.

    Args:
        model: a model file, mace-torch module, student or Potential (see :func:`read_source`).
        out: the ``.pt`` file to write (atomically: saved beside it, checked, then renamed).
        dtype: ``"float64"`` or ``"float32"``; metatomic engines feed the model this dtype.
        head: readout head of a multi-head model (default: the first).
        allow_uncapped: export a hard-capped student without its cap.
        radial: ``"exact"``, or ``"tabulated"``: the radial MLPs as the tabulated lever's cubic
            tables (the knots ``macelerate.load(..., radial="tabulated")`` picks), checked
            against macelerate's tabulated potential; the tables' own force error against the
            exact model on the probe structures is given in the report's changes. A smooth
            neighbour cap multiplies the tables' output, as in macelerate's runtime.

    Returns:
        The report; its agreement is metatomic-ase's ``MetatomicCalculator`` on the written file
        against :class:`macelerate.Calculator` on the exported model, on a periodic and a
        non-periodic probe structure (non-conservative outputs for direct-head students).

    Raises:
        ExportError: metatomic is not installed, the model has parts metatomic engines cannot
            run, or the written file disagrees with macelerate.
    """
    check_installed()
    torch_dtype = check_dtype(dtype)
    if radial not in RADIAL_MODES:
        raise ExportError(f"radial must be one of {list(RADIAL_MODES)}, not {radial!r}")
    source = read_source(model)
    parts = _parts(source, allow_uncapped=allow_uncapped)
    parts = dataclasses.replace(parts, changes=(*parts.changes, FIRST_DERIVATIVES))
    reference: Any = parts.mace if parts.mace is source else _uncapped(source)
    if radial == "tabulated":
        mace, reference, note = _tabulated(parts.mace, reference, dtype=dtype, head=head)
        parts = dataclasses.replace(parts, mace=mace, changes=(*parts.changes, note))
    atomistic = build_atomistic_model(
        parts.mace, dtype=torch_dtype, force_head=parts.force_head,
        stress_head=parts.stress_head, confidence=parts.confidence, head=head,
        name=Path(out).stem, changes=parts.changes, edge_selection=parts.edge_selection,
    )  # fmt: skip
    agreement = _save_checked(atomistic, reference, Path(out), dtype=dtype, head=head)
    return ExportReport(Path(out), "metatomic", dtype, parts.changes, agreement, "metatomic-ase")


RADIAL_MODES = ("exact", "tabulated")
FIRST_DERIVATIVES = (
    "symmetric contraction in the runtime's gradient form: forces and stress exact, no second "
    "derivatives (Hessians by double autograd are not supported)"
)


def _tabulated(
    mace: torch.nn.Module, reference: torch.nn.Module, *, dtype: str, head: str | None
) -> tuple[torch.nn.Module, Any, str]:
    """(the backbone with scriptable tables, the tabulated Potential to check the file
    against, the report line) for ``radial="tabulated"``.

    Raises:
        ExportError: a model the lever cannot tabulate (a layer without a radial MLP).
    """
    from macelerate.export._metatomic_radial import scriptable_tabulated
    from macelerate.models.loading import load
    from macelerate.transforms.tabulate import (
        TabulationError,
        force_errors,
        tabulate_radial,
        tabulated_model,
    )

    exact = load(reference, dtype=dtype, head=head, min_distance=None)
    try:
        tabulated, report = tabulate_radial(exact)
        # tables from float64 weights whatever the file's dtype (float32 tables would round
        # the cubics' coefficients before the export's own cast)
        mace64 = _cast_copy(mace, torch.float64)
        tables, _ = tabulated_model(mace64, n_knots=report.n_knots, r_min=report.r_min)
    except TabulationError as error:
        raise ExportError(f"cannot tabulate this model's radial functions: {error}") from error
    probe = [atoms for _, atoms in probe_structures(exact.atomic_numbers)]
    worst, _, _ = force_errors(exact, tabulated, probe)
    note = (
        f"radial MLPs as cubic tables ({report.n_knots} knots on [{report.r_min}, "
        f"{report.r_max}] Å; max |ΔF| {worst:.1e} eV/Å against the exact model on the probe "
        "structures)"
    )
    return scriptable_tabulated(tables), tabulated, note


def _uncapped(student: Any) -> torch.nn.Module:
    """The student as metatomic runs it: on uncapped graphs (a copy when it has a hard cap; a
    smooth cap runs inside the export, so such a student is its own reference)."""
    if student.config.max_neighbors is None or student.config.smooth_cap:
        return student
    with model_construction():
        uncapped = copy.deepcopy(student)
    uncapped.config = dataclasses.replace(student.config, max_neighbors=None)
    return uncapped


def _save_checked(
    atomistic: Any, reference_model: Any, out: Path, *, dtype: str, head: str | None
) -> Agreement:
    from metatomic_ase import MetatomicCalculator

    from macelerate.calculator import Calculator
    from macelerate.models.potential import Potential

    described: Any = reference_model
    structures = probe_structures([int(z) for z in described.atomic_numbers])
    if isinstance(reference_model, Potential):  # already loaded as it must run (tabulated)
        reference = Calculator(reference_model)
        direct = non_conservative_mode(reference_model.model)
    else:
        reference = Calculator(reference_model, dtype=dtype, head=head, min_distance=None)
        direct = non_conservative_mode(reference_model)
    found: list[Agreement] = []

    def write(tmp: Path) -> None:
        with model_construction():
            atomistic.save(str(tmp))
        candidate = MetatomicCalculator(
            str(tmp), device="cpu", non_conservative=direct, check_consistency=True
        )
        agreement = compare(reference, candidate, structures)
        check_agreement(
            agreement, dtype=dtype, n_atoms=len(structures[0][1]), what="metatomic model"
        )
        if reference.potential.has_confidence:
            _check_confidence(reference, candidate, structures, dtype=dtype)
        found.append(agreement)

    write_atomically(out, write)
    return found[0]


def _check_confidence(reference: Any, candidate: Any, structures: Any, *, dtype: str) -> None:
    """Refuse an export whose :data:`CONFIDENCE_OUTPUT` differs from macelerate's
    ``force_confidence`` beyond the force tolerance of ``dtype``."""
    from metatomic.torch import ModelOutput

    request = {CONFIDENCE_OUTPUT: ModelOutput(unit="eV/Angstrom", sample_kind="atom")}
    tolerance = FORCE_TOLERANCE[dtype]
    for name, atoms in structures:
        want = reference.get_property("force_confidence", atoms)
        block = candidate.run_model(atoms, request)[CONFIDENCE_OUTPUT].block()
        got = block.values.detach().cpu().double().numpy().reshape(-1)
        difference = float(np.abs(got - want).max())
        if not difference <= tolerance:
            raise ExportError(
                f"the metatomic model's {CONFIDENCE_OUTPUT} differs from macelerate's by "
                f"{difference:.2e} eV/Å on {name} ({tolerance:.0e} allowed in {dtype}); nothing "
                "was written. Please report this with the model"
            )


def non_conservative_mode(model: torch.nn.Module) -> bool | str:
    """``MetatomicCalculator(non_conservative=...)`` matching how macelerate runs ``model``
    (a model or student; False: conservative, else True, ``"forces"`` or ``"stress"``)."""
    forces = getattr(model, "force_head", None) is not None
    stress = getattr(model, "stress_head", None) is not None
    return (forces and stress) or ("forces" if forces else "stress" if stress else False)
