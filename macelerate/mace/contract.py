"""What macelerate relies on inside mace-torch and e3nn, in one place, and the versions it was
checked against.

macelerate reads, replaces and rebuilds mace-torch modules through attributes neither package
documents as public. This module lists that surface as data:

* :data:`MEMBERS`: which attribute of which mace-torch / e3nn class, what kind of value it must
  be, what macelerate uses it for and which macelerate modules rely on it;
* :data:`SIGNATURES`: the functions and methods macelerate calls or imitates, with the
  parameters it passes or mirrors;
* :data:`BEHAVIOURS`: what those calls must do (a radial embedding returning a pair, the
  ``conv_fusion`` hook, ...);
* the class names macelerate dispatches on (:data:`MODEL_CLASSES`, :data:`INTERACTION_CLASSES`,
  ...), defined here once.

``tests/mace/test_contract.py`` builds tiny models of every supported block type and checks each
entry (with :func:`macelerate.mace.surface.surface_problems`), so a mace-torch upgrade that moves
any of it fails in that one test. :func:`check_mace_version` refuses other versions at import.

Supported versions (:data:`SUPPORTED_VERSIONS`): mace-torch 0.3.16 and e3nn 0.4.4 exactly.
mace-torch 0.3.15 differs in what macelerate reads: ``extract_config_mace_model`` returns
``MLP_irreps=1`` and no gate for single-layer models, and ``MACE`` lacks the
``keep_last_layer_irreps`` argument 0.3.16 configurations may carry; newer releases are unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Literal

from macelerate.errors import MacelerateError

SUPPORTED_VERSIONS: dict[str, tuple[str, ...]] = {"mace-torch": ("0.3.16",), "e3nn": ("0.4.4",)}
"""Distribution -> the releases the contract test passed on."""

MODEL_CLASSES = ("ScaleShiftMACE", "MACE")
"""``mace.modules`` model classes macelerate describes, converts, prunes and runs."""
INTERACTION_CLASSES = ("RealAgnosticResidualInteractionBlock", "RealAgnosticInteractionBlock")
"""``mace.modules.blocks`` interaction blocks macelerate reads (layout, pruning) and fuses."""
SELECTOR_INTERACTION_CLASSES = ("RealAgnosticInteractionBlock",)
"""Interaction blocks whose ``skip_tp`` maps the message (not the node features) and that return
no residual: mace-torch's default first block."""
RADIAL_EMBEDDING_CLASS = "RadialEmbeddingBlock"
"""The radial embedding macelerate wraps (smooth cap) and tabulates."""
SYMMETRIC_CONTRACTION_CLASS = "SymmetricContraction"
"""The e3nn-based symmetric contraction macelerate replaces by its table-based one."""
EMPTY_PARAM_CLASS = "EmptyParam"
"""mace-torch's frozen all-zero contraction weights (no gradient; skipped by Taylor scores)."""

_MACE = "mace.modules.models.MACE"
_BLOCKS = "mace.modules.blocks."
_INTERACTIONS = tuple(_BLOCKS + name for name in INTERACTION_CLASSES)
_CONTRACTION = "mace.modules.symmetric_contraction.Contraction"
_LINEAR = "e3nn.o3._linear.Linear"
_TP = "e3nn.o3._tensor_product._tensor_product.TensorProduct"
_FC = "e3nn.nn._fc.FullyConnectedNet"

Kind = Literal[
    "module", "modules", "tensor", "parameter", "parameters", "irreps", "int", "bool", "ints",
    "strings", "records", "present",
]  # fmt: skip
"""What a member must hold: an ``nn.Module``, a ``ModuleList``, a tensor (buffer), an
``nn.Parameter``, a ``ParameterList``, e3nn ``Irreps``, an int, a bool, a list of ints, a list of
strings, a sequence of records with ``fields``, or any value (``present``)."""


@dataclass(frozen=True)
class Member:
    """One attribute macelerate reads or replaces.

    ``name`` may hold ``{nu}`` (one attribute per correlation order ``1..correlation``) or
    ``{i}`` (one per layer ``0..len(hs) - 2``). An ``optional`` member exists only for some
    constructor options (it must then be as listed, and exist in at least one model checked).
    """

    owners: tuple[str, ...]
    name: str
    kind: Kind
    use: str
    used_by: tuple[str, ...]
    fields: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class Signature:
    """A function (``method`` None) or method macelerate calls or imitates: ``parameters`` must
    be among its parameters, in this order."""

    owner: str
    method: str | None
    parameters: tuple[str, ...]
    use: str
    used_by: tuple[str, ...]


def _m(
    owners: str | tuple[str, ...],
    name: str,
    kind: Kind,
    use: str,
    *used_by: str,
    fields: tuple[str, ...] = (),
    optional: bool = False,
) -> Member:
    owners = (owners,) if isinstance(owners, str) else owners
    return Member(owners, name, kind, use, used_by, fields, optional)


_LINEAR_PATH = ("i_in", "i_out", "path_shape", "path_weight")
_TP_PATH = ("i_in1", "i_in2", "i_out", "connection_mode", "has_weight", "path_weight", "path_shape")


MEMBERS: tuple[Member, ...] = (
    _m(_MACE, "r_max", "tensor", "cutoff of the graphs", "models.potential",
       "graph.model_options", "models.convert", "compress.taylor", "bench.worker"),
    _m(_MACE, "atomic_numbers", "tensor", "element table (one-hot order)", "models.potential",
       "graph.model_options", "models.convert", "compress.taylor"),
    _m(_MACE, "num_interactions", "tensor", "layer count", "models.info"),
    _m(_MACE, "heads", "strings", "readout heads", "models.potential", "models.info"),
    _m(_MACE, "node_embedding", "module", "precision role; layout", "precision.apply",
       "mace.layout"),
    _m(_MACE, "radial_embedding", "module", "wrapped (smooth cap), tabulated",
       "models.student", "transforms.tabulate", "precision.apply"),
    _m(_MACE, "spherical_harmonics", "module", "precision role", "precision.apply"),
    _m(_MACE, "interactions", "modules", "walked, fused, tabulated, pruned", "mace.layout",
       "runtime.accelerate", "runtime.fused_conv", "transforms.tabulate", "precision.apply",
       "models.potential", "train.export"),
    _m(_MACE, "products", "modules", "contractions replaced; node_feats irreps", "mace.layout",
       "runtime.accelerate", "models.heads", "precision.apply"),
    _m(_MACE, "readouts", "modules", "layout; precision role", "mace.layout", "precision.apply"),
    _m(_MACE, "atomic_energies_fn", "module", "E0 of a teacher; precision role",
       "train.distill", "precision.apply"),
    _m(_MACE, "pair_repulsion_fn", "module", "precision role (with pair_repulsion=True)",
       "precision.apply", optional=True),
    _m("mace.modules.models.ScaleShiftMACE", "scale_shift", "module",
       "scale/shift of a teacher; precision role", "train.distill", "precision.apply",
       "mace.config"),
    _m(_BLOCKS + "AtomicEnergiesBlock", "atomic_energies", "tensor", "E0 per element",
       "train.distill"),
    _m(_BLOCKS + "ScaleShiftBlock", "scale", "tensor", "energy scale", "train.distill"),
    _m(_BLOCKS + "ScaleShiftBlock", "shift", "tensor", "energy shift", "train.distill"),
    _m(_BLOCKS + "LinearNodeEmbeddingBlock", "linear", "module", "layout (node.0)",
       "mace.layout"),
    _m(_BLOCKS + RADIAL_EMBEDDING_CLASS, "bessel_fn", "module", "delegated by wrappers",
       "graph.smooth_cap", "runtime.tabulated_radial"),
    _m(_BLOCKS + RADIAL_EMBEDDING_CLASS, "cutoff_fn", "module", "cutoff envelope",
       "graph.smooth_cap", "runtime.tabulated_radial"),
    _m(_BLOCKS + RADIAL_EMBEDDING_CLASS, "apply_cutoff", "bool",
       "whether the envelope is applied inside", "runtime.tabulated_radial", "graph.smooth_cap"),
    _m(_BLOCKS + RADIAL_EMBEDDING_CLASS, "out_dim", "int", "basis size, delegated by wrappers",
       "graph.smooth_cap", "runtime.tabulated_radial"),
    _m("mace.modules.radial.PolynomialCutoff", "r_max", "tensor", "smooth-cap cutoff",
       "graph.smooth_cap"),
    _m(_INTERACTIONS, "linear_up", "module", "layout (edge.t); precision role", "mace.layout",
       "precision.apply"),
    _m(_INTERACTIONS, "conv_tp", "module", "replaced by the fused convolution; layout",
       "runtime.fused_conv", "runtime.accelerate", "runtime.dead_blocks", "mace.layout",
       "precision.apply", "models.potential"),
    _m(_INTERACTIONS, "conv_tp_weights", "module", "radial MLP: tabulated, sliced; layout",
       "runtime.tabulated_radial", "runtime.accelerate", "transforms.tabulate", "mace.layout",
       "precision.apply"),
    _m(_INTERACTIONS, "linear", "module", "liveness; layout (message.t)", "runtime.dead_blocks",
       "mace.layout", "precision.apply"),
    _m(_INTERACTIONS, "skip_tp", "module", "element-dependent skip / selector",
       "runtime.dead_blocks", "mace.layout", "precision.apply"),
    _m(_BLOCKS + "EquivariantProductBasisBlock", "symmetric_contractions", "module",
       "replaced by the table-based contraction; layout", "runtime.accelerate", "mace.layout",
       "precision.apply"),
    _m(_BLOCKS + "EquivariantProductBasisBlock", "linear", "module",
       "layout (node.t+1); node_feats irreps", "mace.layout", "models.heads"),
    _m(_BLOCKS + "NonLinearReadoutBlock", "linear_1", "module", "layout (readout)",
       "mace.layout"),
    _m(_BLOCKS + "NonLinearReadoutBlock", "linear_2", "module", "layout (readout)",
       "mace.layout"),
    _m(_BLOCKS + "LinearReadoutBlock", "linear", "module", "layout (readout)", "mace.layout"),
    _m("mace.modules.symmetric_contraction." + SYMMETRIC_CONTRACTION_CLASS, "contractions",
       "modules", "one Contraction per output irrep", "runtime.symmetric_contraction",
       "runtime.accelerate", "mace.layout"),
    _m("mace.modules.symmetric_contraction." + SYMMETRIC_CONTRACTION_CLASS, "irreps_in",
       "irreps", "coupling irreps (message.t)", "mace.layout", "runtime.symmetric_contraction"),
    _m("mace.modules.symmetric_contraction." + SYMMETRIC_CONTRACTION_CLASS, "irreps_out",
       "irreps", "output irrep per contraction", "mace.layout",
       "runtime.symmetric_contraction"),
    _m(_CONTRACTION, "correlation", "int", "body order", "runtime.symmetric_contraction",
       "mace.layout"),
    _m(_CONTRACTION, "num_features", "int", "channels", "runtime.symmetric_contraction"),
    _m(_CONTRACTION, "weights_max", "parameter",
       "weights [elements, params, channels] of order nu = correlation",
       "runtime.symmetric_contraction", "mace.layout"),
    _m(_CONTRACTION, "weights", "parameters", "weights[k]: order correlation - 1 - k",
       "runtime.symmetric_contraction", "mace.layout", "compress.transfer"),
    _m(_CONTRACTION, "U_matrix_{nu}", "tensor", "coupling tables per order nu",
       "runtime.symmetric_contraction", "runtime.accelerate", "compress.irreps_slicing"),
    _m(_LINEAR, "instructions", "records", "weighted paths", "mace.irreps",
       "runtime.dead_blocks", fields=_LINEAR_PATH),
    _m(_LINEAR, "irreps_in", "irreps", "input irreps", "mace.layout"),
    _m(_LINEAR, "irreps_out", "irreps", "output irreps", "mace.layout", "runtime.dead_blocks",
       "models.heads"),
    _m(_LINEAR, "weight", "parameter", "flat weight (liveness, pruning)",
       "runtime.dead_blocks", "compress.transfer"),
    _m(_TP, "instructions", "records", "paths and their Clebsch-Gordan blocks", "mace.irreps",
       "mace.layout", "runtime.fused_conv", "runtime.dead_blocks", fields=_TP_PATH),
    _m(_TP, "irreps_in1", "irreps", "first operand", "mace.layout", "runtime.fused_conv"),
    _m(_TP, "irreps_in2", "irreps", "second operand", "mace.layout", "runtime.fused_conv"),
    _m(_TP, "irreps_out", "irreps", "output", "mace.layout", "runtime.fused_conv",
       "models.potential"),
    _m(_TP, "weight_numel", "int", "radial-MLP output width", "runtime.fused_conv",
       "runtime.accelerate"),
    _m(_TP, "internal_weights", "bool", "fusable only with external weights",
       "runtime.fused_conv"),
    _m(_TP, "shared_weights", "bool", "fusable only with per-edge weights",
       "runtime.fused_conv"),
    _m(_FC, "hs", "ints", "layer widths", "mace.layout", "runtime.accelerate"),
    _m(_FC, "layer{i}", "module", "radial-MLP layers (weights [h_in, h_out])", "mace.layout",
       "runtime.accelerate", "runtime.tabulated_radial"),
    _m("e3nn.nn._fc._Layer", "weight", "parameter", "[h_in, h_out]", "runtime.accelerate",
       "runtime.tabulated_radial"),
    _m("e3nn.nn._fc._Layer", "h_out", "int", "output width", "runtime.accelerate"),
    _m("e3nn.nn._fc._Layer", "act", "present", "None on the linear last layer",
       "runtime.tabulated_radial"),
)  # fmt: skip
"""Every mace-torch / e3nn attribute macelerate reads or replaces (``used_by``: modules of
macelerate, without the ``macelerate.`` prefix)."""

SIGNATURES: tuple[Signature, ...] = (
    Signature("mace.modules.models.ScaleShiftMACE", "forward",
              ("data", "training", "compute_force", "compute_stress"),
              "every energy / forces / stress call", ("models.potential", "models.student")),
    Signature(_BLOCKS + RADIAL_EMBEDDING_CLASS, "forward",
              ("edge_lengths", "node_attrs", "edge_index", "atomic_numbers"),
              "imitated by the smooth-cap and tabulated-radial wrappers",
              ("graph.smooth_cap", "runtime.tabulated_radial")),
    *(Signature(owner, "forward",
                ("node_attrs", "node_feats", "edge_attrs", "edge_feats", "edge_index", "cutoff"),
                "receives the radial embedding's cutoff",
                ("graph.smooth_cap", "runtime.tabulated_radial"))
      for owner in _INTERACTIONS),
    Signature("mace.modules.symmetric_contraction." + SYMMETRIC_CONTRACTION_CLASS, "forward",
              ("x", "y"), "imitated by the table-based contraction",
              ("runtime.symmetric_contraction",)),
    Signature(_CONTRACTION, "U_tensors", ("nu",), "coupling tables of a pruned contraction",
              ("compress.transfer",)),
    Signature("mace.tools.scripts_utils.extract_config_mace_model", None, ("model",),
              "constructor arguments of a model", ("mace.config",)),
    Signature("mace.calculators.MACECalculator", "__init__",
              ("model_paths", "device", "default_dtype"), "the mace-torch reference engine",
              ("bench.worker",)),
    Signature("mace.calculators.MACECalculator", "calculate", ("atoms", "properties"),
              "a timed reference step", ("bench.worker",)),
    Signature("mace.calculators.MACECalculator", "_atoms_to_batch", ("atoms",),
              "the reference engine's graph building, timed alone", ("bench.worker",)),
)  # fmt: skip
"""Every mace-torch function or method macelerate calls with these parameters, or imitates."""

BEHAVIOURS: dict[str, str] = {
    "radial_embedding_returns_pair": (
        "RadialEmbeddingBlock(...) returns (edge_feats [n_edges, n_basis], cutoff [n_edges, 1] or "
        "None) and interaction blocks multiply their radial-MLP output by that cutoff "
        "(mace-torch >= 0.3.14): graph.smooth_cap, runtime.tabulated_radial"
    ),
    "conv_fusion_hook": (
        "an interaction block with a conv_fusion attribute calls conv_tp(node_feats [n_nodes], "
        "edge_attrs, tp_weights, edge_index) and takes its result as the message summed over "
        "neighbours: runtime.fused_conv, runtime.accelerate"
    ),
    "model_outputs": (
        "model(build_graph(...), training=, compute_force=, compute_stress=) returns energy [G], "
        "node_energy [N], forces [N, 3], stress [G, 3, 3] and node_feats [N, D], the features "
        "of every layer in products[t].linear.irreps_out order: models.potential, "
        "models.student, models.heads"
    ),
    "selector_has_no_residual": (
        "RealAgnosticInteractionBlock returns (message, None); RealAgnosticResidualInteraction"
        "Block returns (message, skip_tp(node_feats, node_attrs)): mace.layout, "
        "runtime.dead_blocks"
    ),
    "contraction_weight_orders": (
        "Contraction.weights_max is order nu = correlation and weights[k] order "
        "correlation - 1 - k, each [elements, params of U_matrix_nu, num_features]: "
        "mace.layout, runtime.symmetric_contraction"
    ),
    "config_round_trip": (
        "extract_config_mace_model(model) returns constructor arguments that rebuild a model "
        "with the same state-dict keys and shapes: mace.config"
    ),
}
"""What the listed calls must do; each has its own check in ``tests/mace/test_contract.py``."""


class MaceVersionError(MacelerateError, ImportError):
    """mace-torch or e3nn is missing, or installed at a version the contract was not checked on."""


def installed_versions() -> dict[str, str | None]:
    """Installed version of each :data:`SUPPORTED_VERSIONS` distribution (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in SUPPORTED_VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_mace_version(installed: Mapping[str, str | None] | None = None) -> None:
    """Refuse mace-torch / e3nn versions other than :data:`SUPPORTED_VERSIONS`.

    Args:
        installed: distribution -> version (None: missing); default :func:`installed_versions`.

    Raises:
        MaceVersionError: one message naming every missing or unsupported distribution, the
            installed and the supported versions, and the command that installs them.
    """
    installed = installed_versions() if installed is None else installed
    problems = []
    for name, supported in SUPPORTED_VERSIONS.items():
        version = installed.get(name)
        if version not in supported:
            found = "is not installed" if version is None else f"{version} is installed"
            problems.append(f"{name} {' or '.join(supported)} ({found})")
    if problems:
        pins = " ".join(
            f"'{name}=={versions[-1]}'" for name, versions in SUPPORTED_VERSIONS.items()
        )
        raise MaceVersionError(
            f"macelerate supports {'; '.join(problems)}: its use of mace-torch and e3nn "
            f"internals (macelerate.mace.contract) is checked only there; pip install {pins}"
        )
