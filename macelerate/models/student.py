"""Fast students for distillation: a plain mace-torch ``ScaleShiftMACE`` plus optional parts.

A :class:`Student` holds ``backbone`` (a mace-torch model built by
:func:`macelerate.mace.config.build_mace_model`) and, as the :class:`StudentConfig` asks:

* a neighbour cap: hard (graphs keep the k nearest senders) or smooth
  (:class:`~macelerate.graph.smooth_cap.SmoothCapRadialEmbedding` replaces the backbone's
  ``radial_embedding``; energies stay C1);
* direct force / stress heads instead of autograd derivatives: node heads on ``1o`` features
  (:mod:`macelerate.models.heads`) or pair-force heads on edges, equivariant or cartesian, whose
  virial gives the stress (:mod:`macelerate.models.edge_heads`);
* a confidence head (binned per-atom force-error logits on detached features);
* ZBL pair repulsion through mace-torch's own ``pair_repulsion=True`` option;
* per-layer kinds (``layers``): MACE, smoothed attention or non-equivariant (cartesian) layers
  (:mod:`macelerate.models.hybrid`).

Graphs for a student come from :meth:`Student.build_graph`: ``build_graph(**graph_options())``
and, for a smooth cap, ``select_smooth_cap_edges(graph, **edge_selection())``, so training and
inference see the same neighbour sets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from ase import Atoms
from ase.data import covalent_radii

from macelerate._dtypes import MODEL_DTYPES, dtype_name, parse_dtype
from macelerate._mace import model_construction
from macelerate._torch_state import default_dtype
from macelerate.errors import MacelerateError, ModelFileError
from macelerate.graph.batch import build_graph
from macelerate.graph.model_options import model_graph_options, select_model_edges
from macelerate.graph.smooth_cap import (
    SmoothCapRadialEmbedding,
    smooth_cap_weights,
    threshold_guess,
)
from macelerate.graph.validation import DEFAULT_MIN_DISTANCE
from macelerate.mace.config import (
    build_mace_model,
    describe_mace_model,
    load_error_detail,
    scale_shift_mace_config,
)
from macelerate.models.checkpoint import save_checkpoint, upgrade_checkpoint
from macelerate.models.edge_heads import EdgeForceHead, EdgeVirialStress
from macelerate.models.heads import (
    ConfidenceHead,
    DirectForceHead,
    DirectStressHead,
    node_feats_irreps,
)
from macelerate.models.hybrid import EQUIVARIANT_KINDS, install_layers, layer_kinds_problem

FORCE_HEAD_KINDS = ("node", "edge", "cartesian")
"""Direct force heads: on ``1o`` node features, equivariant or non-equivariant pair forces."""

MODEL_CLASS = "macelerate.Student"
"""``model_config["model_class"]`` of student checkpoints."""


class StudentError(MacelerateError, ValueError):
    """A student configuration that cannot be built, or a student mace-torch cannot represent."""


@dataclass(frozen=True)
class StudentConfig:
    """Architecture and options of a student (JSON-safe; lengths in Å, energies in eV).

    ``atomic_energies`` are the per-element E0 in the order of ``atomic_numbers``.
    ``max_neighbors`` caps the neighbours per atom (hard cap unless ``smooth_cap``, whose switch
    half-width is ``cap_width`` Å). ``confidence_bins`` bins split [0, ``confidence_max_error``]
    eV/Å of per-atom force error. ``force_head_kind`` picks the direct force head (one of
    :data:`FORCE_HEAD_KINDS`; pair heads of width ``edge_head_width`` also give the direct stress
    as their virial).
    """

    atomic_numbers: tuple[int, ...]
    atomic_energies: tuple[float, ...]
    channels: int = 32
    max_L: int = 1
    max_ell: int = 3
    correlation: int = 2
    num_interactions: int = 2
    r_max: float = 5.0
    radial_mlp: tuple[int, ...] = (32, 32)
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    avg_num_neighbors: float = 10.0
    atomic_inter_scale: float = 1.0
    atomic_inter_shift: float = 0.0
    max_neighbors: int | None = None
    smooth_cap: bool = False
    cap_width: float = 0.2
    direct_forces: bool = False
    direct_stress: bool = False
    force_head_kind: str = "node"
    edge_head_width: int = 64
    confidence_head: bool = False
    confidence_bins: int = 50
    confidence_max_error: float = 1.0
    head_channels: int = 16
    zbl: bool = False
    layers: tuple[str, ...] = ()
    attention_heads: int = 4
    dtype: str = "float64"

    def __post_init__(self) -> None:
        for name in ("atomic_numbers", "atomic_energies", "radial_mlp", "layers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        if len(self.atomic_numbers) != len(self.atomic_energies):
            problems.append("atomic_energies needs one value per atomic number")
        if self.dtype not in MODEL_DTYPES:
            problems.append(f"dtype must be one of {sorted(MODEL_DTYPES)}, not {self.dtype!r}")
        if self.max_neighbors is not None and self.max_neighbors < 1:
            problems.append("max_neighbors must be >= 1 or None")
        if self.smooth_cap and (self.max_neighbors is None or not self.cap_width > 0):
            problems.append("smooth_cap needs max_neighbors and cap_width > 0")
        if self.force_head_kind not in FORCE_HEAD_KINDS:
            problems.append(
                f"force_head_kind must be one of {list(FORCE_HEAD_KINDS)}, "
                f"not {self.force_head_kind!r}"
            )
        node_head = self.direct_forces and self.force_head_kind == "node"
        if node_head and (self.max_L < 1 or self.num_interactions < 2):
            problems.append(
                "a node direct-force head needs 1o features: max_L >= 1, num_interactions >= 2; "
                "or use an edge force head (force_head_kind='edge'), which works on L=0"
            )
        if self.edge_head_width < 1:
            problems.append("edge_head_width must be >= 1")
        layers_problem = layer_kinds_problem(self.layers, self.num_interactions)
        if layers_problem:
            problems.append(layers_problem)
        if "attention" in self.layers and (
            self.attention_heads < 1 or self.channels % self.attention_heads
        ):
            problems.append(f"channels {self.channels} must be a multiple of attention_heads")
        if problems:
            raise StudentError("invalid StudentConfig: " + "; ".join(problems))

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """One kind per interaction (``layers``, or all ``"mace"`` when empty)."""
        return self.layers or ("mace",) * self.num_interactions

    @property
    def equivariant(self) -> bool:
        """True when every layer and head is rotation equivariant by construction."""
        cartesian_head = self.direct_forces and self.force_head_kind == "cartesian"
        return not cartesian_head and all(kind in EQUIVARIANT_KINDS for kind in self.layer_kinds)

    @property
    def edge_force_head(self) -> bool:
        """True when direct forces (and direct stress) come from pair forces on edges."""
        return self.direct_forces and self.force_head_kind != "node"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """Build from a plain dict; unknown keys are an error (typos never pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StudentError(f"unknown StudentConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples as lists) that :meth:`from_dict` reads back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def mace_config(self) -> dict[str, Any]:
        """The backbone's constructor arguments in :func:`build_mace_model` format."""
        return scale_shift_mace_config(
            atomic_numbers=self.atomic_numbers, atomic_energies=self.atomic_energies,
            channels=self.channels, max_L=self.max_L, max_ell=self.max_ell,
            correlation=self.correlation, num_interactions=self.num_interactions,
            r_max=self.r_max, radial_mlp=self.radial_mlp, mlp_channels=16,
            num_bessel=self.num_bessel, num_polynomial_cutoff=self.num_polynomial_cutoff,
            avg_num_neighbors=self.avg_num_neighbors,
            atomic_inter_scale=self.atomic_inter_scale,
            atomic_inter_shift=self.atomic_inter_shift, pair_repulsion=self.zbl, dtype=self.dtype,
        )  # fmt: skip


class Student(torch.nn.Module):
    """A mace-torch backbone with optional neighbour cap and direct / confidence heads.

    Args:
        config: the architecture.
        backbone_config: constructor arguments of the backbone (as :func:`describe_mace_model`
            writes them); default ``config.mace_config()``. Used when loading checkpoints.
    """

    def __init__(
        self, config: StudentConfig, *, backbone_config: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        dtype = parse_dtype(config.dtype)
        with default_dtype(dtype), model_construction():
            backbone: Any = build_mace_model(backbone_config or config.mace_config())
            # what rebuilds this backbone: mace-torch's constructor arguments, before any of its
            # layers is replaced by a hybrid kind (which the constructor cannot name)
            self.backbone_description = describe_mace_model(backbone)
            install_layers(backbone, layers=config.layer_kinds, heads=config.attention_heads)
            self.backbone = backbone
            if config.smooth_cap:
                assert config.max_neighbors is not None  # StudentConfig.__post_init__ checks it
                backbone.radial_embedding = SmoothCapRadialEmbedding(
                    backbone.radial_embedding,
                    max_neighbors=int(config.max_neighbors),
                    width=config.cap_width,
                )
            irreps = node_feats_irreps(self.backbone)
            self.force_head, self.stress_head = _direct_heads(config, irreps)
            self.confidence = (
                ConfidenceHead(irreps, n_bins=config.confidence_bins,
                               max_error=config.confidence_max_error)
                if config.confidence_head else None
            )  # fmt: skip
        self.to(dtype)
        self.node_feats_irreps = str(irreps)
        self.atomic_numbers = [int(z) for z in config.atomic_numbers]
        self.r_max = float(config.r_max)

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters (follows ``.to(dtype)``)."""
        return next(self.backbone.parameters()).dtype

    @property
    def confidence_bins(self) -> torch.Tensor | None:
        """Edges [n_bins + 1] in eV/Å of the confidence head's force-error bins (None without)."""
        return None if self.confidence is None else self.confidence.bin_edges

    def graph_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`macelerate.graph.build_graph` for this student's graphs.

        ``{"cutoff": r_max}``, plus ``"max_neighbors": k`` for a hard cap. A smooth-cap student
        counts neighbours up to ``r_max + 2 * cap_width`` and asks for that cutoff; such graphs
        give exact results as built, and :meth:`edge_selection` makes them sparse without
        changing any output. ``z_table``, ``dtype`` and ``device`` are the caller's.
        """
        config = self.config
        if config.smooth_cap:
            return {"cutoff": self.r_max + 2.0 * config.cap_width}
        if config.max_neighbors is not None:
            return {"cutoff": self.r_max, "max_neighbors": int(config.max_neighbors)}
        return {"cutoff": self.r_max}

    def edge_selection(self) -> dict[str, Any] | None:
        """How to drop the edges the smooth cap gives zero weight (None without a smooth cap).

        Returns keyword arguments of :func:`~macelerate.graph.smooth_cap.select_smooth_cap_edges`.
        With ZBL, edges within the largest covalent-radius sum of the student's elements are
        always kept, because the pair term sees every edge of the graph.
        """
        config = self.config
        if not config.smooth_cap:
            return None
        assert config.max_neighbors is not None  # StudentConfig.__post_init__ checks it
        zbl_range = 2.0 * max(covalent_radii[z] for z in self.atomic_numbers) if config.zbl else 0
        return {
            "max_neighbors": int(config.max_neighbors),
            "width": float(config.cap_width),
            "cutoff": self.r_max,
            "keep_within": float(zbl_range),
        }

    def build_graph(
        self,
        atoms_or_list: Atoms | Sequence[Atoms],
        *,
        device: torch.device | str | None = None,
        min_distance: float | None = DEFAULT_MIN_DISTANCE,
    ) -> dict[str, torch.Tensor]:
        """The graph of ``atoms_or_list`` for this student (elements, dtype, caps).

        ``build_graph(**graph_options())``, then :meth:`edge_selection` for a smooth cap.
        """
        if device is None:
            device = next(self.parameters()).device
        graph = build_graph(
            atoms_or_list, dtype=self.dtype, device=device, min_distance=min_distance,
            **model_graph_options(self),
        )  # fmt: skip
        return select_model_edges(graph, self.edge_selection())

    def forward(
        self,
        graph: dict[str, torch.Tensor],
        training: bool = False,
        compute_force: bool = True,
        compute_stress: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies and, as asked, forces, stress, node features and confidence logits.

        Args:
            graph: a batch from :meth:`build_graph` (never modified).
            training: keep the graph of autograd forces/stress for a loss (``create_graph``).
            compute_force: forces by the direct head if the student has one, else by autograd.
            compute_stress: stress by the direct head if present, else by autograd (periodic).

        Returns:
            ``energy`` [G] eV, ``node_energy`` [N] eV, ``node_feats`` [N, D], and as asked
            ``forces`` [N, 3] eV/Å, ``stress`` [G, 3, 3] eV/Å³, ``confidence_logits``
            [N, n_bins].
        """
        data = dict(graph)
        positions = graph["positions"]  # a caller differentiating through positions keeps them
        data["positions"] = positions if positions.requires_grad else positions.detach()
        with threshold_guess(graph.get("cap_threshold")):  # the graph build's smooth-cap roots
            out = self.backbone(
                data,
                training=training,
                compute_force=compute_force and self.force_head is None,
                compute_stress=compute_stress and self.stress_head is None,
            )
        node_feats = out["node_feats"]
        n_graphs = int(graph["ptr"].numel()) - 1
        result = {
            "energy": out["energy"],
            "node_energy": out["node_energy"],
            "node_feats": node_feats,
        }
        if isinstance(self.force_head, EdgeForceHead) and (compute_force or compute_stress):
            direct = self._edge_head_outputs(data, node_feats, n_graphs, compute_stress)
        else:
            direct = {}
            if compute_force and self.force_head is not None:
                direct["forces"] = self.force_head(node_feats, graph["batch"], n_graphs)
            if compute_stress and self.stress_head is not None:
                direct["stress"] = self.stress_head(
                    node_feats, graph["batch"], graph["cell"], n_graphs
                )
        for key, wanted in (("forces", compute_force), ("stress", compute_stress)):
            if wanted:
                result[key] = direct[key] if key in direct else out[key]
        if self.confidence is not None:
            result["confidence_logits"] = self.confidence(node_feats)
        return result

    def _edge_head_outputs(
        self,
        data: dict[str, torch.Tensor],
        node_feats: torch.Tensor,
        n_graphs: int,
        compute_stress: bool,
    ) -> dict[str, torch.Tensor]:
        """``forces`` [N, 3] eV/Å (and ``stress`` [G, 3, 3] eV/Å³) from the edge force head."""
        from mace.modules.utils import get_edge_vectors_and_lengths

        edge_index = data["edge_index"]
        vectors, lengths = get_edge_vectors_and_lengths(
            data["positions"], edge_index, data["shifts"]
        )
        cap_weight = None
        if self.config.smooth_cap:
            assert self.config.max_neighbors is not None  # StudentConfig.__post_init__ checks it
            width = float(self.config.cap_width)
            cap_weight = smooth_cap_weights(
                lengths.squeeze(-1), edge_index[1], n_nodes=int(node_feats.shape[0]),
                max_neighbors=int(self.config.max_neighbors), width=width,
                ceiling=self.r_max + width, guess=data.get("cap_threshold"),
            ).to(vectors.dtype)  # fmt: skip
        assert isinstance(self.force_head, EdgeForceHead)
        forces, edge_forces = self.force_head(
            node_feats, edge_index, vectors, cap_weight, data["batch"], n_graphs
        )
        outputs = {"forces": forces}
        if compute_stress and self.stress_head is not None:
            edge_graph = data["batch"][edge_index[1]]
            outputs["stress"] = self.stress_head(
                vectors, edge_forces, edge_graph, data["cell"], n_graphs
            )
        return outputs


def _direct_heads(
    config: StudentConfig, irreps: Any
) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """(force head, stress head) the config asks for (None where derivatives are autograd's)."""
    if config.edge_force_head:
        force_head = EdgeForceHead(
            str(irreps), r_max=config.r_max, n_basis=config.num_bessel,
            envelope_power=config.num_polynomial_cutoff, hidden=config.edge_head_width,
            cartesian=config.force_head_kind == "cartesian",
        )  # fmt: skip
        return force_head, EdgeVirialStress() if config.direct_stress else None
    hidden = config.head_channels
    return (
        DirectForceHead(irreps, hidden=hidden) if config.direct_forces else None,
        DirectStressHead(irreps, hidden=hidden) if config.direct_stress else None,
    )


def build_student(config: StudentConfig | dict[str, Any]) -> Student:
    """A freshly initialised :class:`Student` (a dict is read with ``StudentConfig.from_dict``)."""
    if isinstance(config, dict):
        config = StudentConfig.from_dict(config)
    return Student(config)


def save_student(
    path: str | Path,
    student: Student,
    provenance: dict[str, Any],
    *,
    transforms_applied: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``student`` as a weights-only macelerate checkpoint (``macelerate.Student``)."""
    model_config = {
        "model_class": MODEL_CLASS,
        # the dtype the weights have now, even if the student was moved with .to(dtype)
        "student": {**student.config.to_dict(), "dtype": dtype_name(student.dtype)},
        "backbone": _backbone_description(student),
    }
    return save_checkpoint(
        path, model_config=model_config, state_dict=student.state_dict(),
        provenance=provenance, transforms_applied=transforms_applied,
    )  # fmt: skip


def student_is_hybrid(student: Student) -> bool:
    """True when some layer of ``student`` is not a mace-torch layer (attention, cartesian)."""
    return any(kind != "mace" for kind in student.config.layer_kinds)


def _backbone_description(student: Student) -> dict[str, Any]:
    """The backbone's constructor arguments (a hybrid's as built, before its layers changed)."""
    if not student_is_hybrid(student):
        return describe_mace_model(student.backbone)  # reads through a smooth-cap wrapper
    return {**student.backbone_description, "dtype": dtype_name(student.dtype)}


def student_from_checkpoint(payload: dict[str, Any], *, source: str) -> Student:
    """Rebuild a :class:`Student` from a loaded (weights-only) checkpoint dictionary.

    Raises:
        ModelFileError: the checkpoint is not a student's, or its configs or weights are damaged
            or edited (each named, with the fix).
    """
    payload = upgrade_checkpoint(payload, source=source)
    model_config = payload["model_config"]
    if model_config.get("model_class") != MODEL_CLASS:
        raise ModelFileError(
            f"{source} holds a {model_config.get('model_class')!r}, not a student; load it with "
            "macelerate.load"
        )
    for key in ("student", "backbone"):
        if not isinstance(model_config.get(key), dict):
            raise ModelFileError(
                f"{source}: this student checkpoint lacks its '{key}' config; the file is "
                "damaged or was edited: save the student again (save_student)"
            )
    try:
        config = StudentConfig.from_dict(model_config["student"])
        student = Student(config, backbone_config=model_config["backbone"])
    except (ValueError, TypeError, KeyError) as error:  # StudentError, ModelFileError, ...
        raise ModelFileError(
            f"{source}: the student config cannot be built ({error}); the file is damaged or "
            "was edited: save the student again (save_student)"
        ) from error
    try:
        result = student.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as error:  # shapes that do not match
        raise ModelFileError(
            f"{source}: weights do not fit the student config ({load_error_detail(error)}); "
            "the file is damaged or was edited"
        ) from error
    missing = [key for key in result.missing_keys if not key.endswith("_zeroed")]
    if missing or result.unexpected_keys:
        raise ModelFileError(
            f"{source}: weights do not fit the student config: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    return student.eval()


def load_student(path: str | Path) -> Student:
    """Read a student checkpoint written by :func:`save_student` (``weights_only=True``).

    The file is read by :func:`macelerate.models.loading.read_model_file` with
    ``allow_pickle=False``, so it gets every check a model file gets.

    Raises:
        ModelFileError: the file is missing, damaged, not a checkpoint, or not a student's.
    """
    from macelerate.models.loading import read_model_file

    model, _ = read_model_file(path, allow_pickle=False)
    if not isinstance(model, Student):
        raise ModelFileError(
            f"{path} holds a {type(model).__name__!r}, not a student; load it with macelerate.load"
        )
    return model


def export_backbone(
    student: Student, *, allow_uncapped: bool = False, keep_smooth_cap: bool = False
) -> torch.nn.Module:
    """The student as a plain mace-torch ``ScaleShiftMACE`` (for LAMMPS and mace-torch tools).

    The confidence head is left out (it changes no energy or force). Parts mace-torch cannot
    represent are an error: direct force/stress heads and the smooth cap. A hard-capped student
    exports only with ``allow_uncapped=True``: mace-torch tools build uncapped graphs, so results
    differ wherever an atom has more than k neighbours. With ``keep_smooth_cap=True`` a
    smooth-cap student's backbone is returned with its
    :class:`~macelerate.graph.smooth_cap.SmoothCapRadialEmbedding` (a macelerate module, which
    TorchScript compiles: for the metatomic export, whose graphs reach ``r_max + 2 * cap_width``).

    Raises:
        StudentError: the student has parts a plain mace-torch model cannot hold.
    """
    config = student.config
    named = {
        "attention or cartesian layers": any(kind != "mace" for kind in config.layer_kinds),
        "a direct force head": config.direct_forces,
        "a direct stress head": config.direct_stress,
        "a smooth neighbour cap": config.smooth_cap and not keep_smooth_cap,
    }
    parts = [name for name, present in named.items() if present]
    if parts:
        raise StudentError(
            f"cannot export this student as a plain mace-torch model: it has {', '.join(parts)}; "
            "run it with macelerate (macelerate.Calculator), or train a conservative all-MACE "
            "student (layers all mace, direct_forces=False, direct_stress=False, "
            "smooth_cap=False) to export it"
        )
    if config.max_neighbors is not None and not config.smooth_cap and not allow_uncapped:
        raise StudentError(
            f"this student was trained on graphs capped at {config.max_neighbors} neighbours, "
            "which mace-torch tools do not build; pass allow_uncapped=True to export anyway"
        )
    with model_construction():
        backbone = copy.deepcopy(student.backbone)
    return backbone.eval()
