"""The channel layout of a mace-torch MACE, read once into typed records.

Channel spaces. The channels of a MACE are not one index shared by the whole network: every
equivariant linear layer (``o3.Linear``, the skip ``FullyConnectedTensorProduct``) mixes channels
freely, so a channel index only means something between two such mixers. Between them sit
channel-wise maps (the ``uvu`` edge tensor product, the per-channel symmetric contraction), which
carry a channel through unchanged. That gives ``3 * num_interactions + 1`` independent spaces,
plus one per non-residual block:

* ``node.t`` (t = 0..T): node features entering interaction t (``node.0``: the embedding;
  ``node.T``: the last layer's scalars). Written by ``node_embedding`` (t = 0) or by
  ``products[t-1].linear`` and, for a residual block t-1, ``interactions[t-1].skip_tp``; read by
  ``interactions[t]`` (``linear_up``, and ``skip_tp`` if residual) and ``readouts[t-1]``.
* ``edge.t``: ``interactions[t].linear_up`` output = the channels of the edge tensor product
  ``conv_tp`` (each path's radial weights per channel) = the input channels of
  ``interactions[t].linear``.
* ``selector.t``, only for a non-residual ``RealAgnosticInteractionBlock`` t (mace-torch's
  default first block), which applies its ``skip_tp`` (the "selector", a fully connected tensor
  product with the element one-hot) to the message instead of to the node features:
  ``interactions[t].linear`` output = ``skip_tp``'s first input. ``skip_tp`` mixes channels
  (``uvw``), so its input and output are separate spaces, exactly like the two sides of a linear.
  The block returns no residual, so ``node.t+1`` is written by ``products[t].linear`` alone.
* ``message.t``: the product's input = the symmetric contraction's channels (``products[t]``,
  weights ``[elements, params, channels]``) = ``products[t].linear``'s input. Written by
  ``interactions[t].linear`` (residual block) or ``interactions[t].skip_tp`` (non-residual).

A channel block of a space spans every L of that channel (the symmetric contraction couples all L
of one channel).

Records. :func:`read_layout` walks a plain (unfused) ``ScaleShiftMACE`` once and returns a
:class:`MaceLayout`: the spaces and one record per weight, in a fixed order:

* :class:`E3nnWeight`: the flat weight of an e3nn ``Linear`` / ``TensorProduct`` with its paths and
  the channel space of every operand. The edge tensor product has no weight of its own: the radial
  MLP's last layer ``[hidden, weight_numel]`` computes it per edge, so that layer is its record.
* :class:`ContractionWeight`: one correlation order of one symmetric contraction.
* :class:`DenseWeight`: a radial-MLP hidden layer (no channel space runs through it).

Importance scoring, weight transfer and the multiply-add estimate (``macelerate.compress``) only
read these records; supporting a new block type means teaching this file its weights.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from macelerate.errors import ModelFileError
from macelerate.mace.config import describe_mace_model
from macelerate.mace.contract import INTERACTION_CLASSES, SELECTOR_INTERACTION_CLASSES
from macelerate.mace.irreps import Irrep, Path, irreps_entries, paths_from_e3nn

Kind = Literal[
    "embedding",
    "linear",
    "skip",
    "tensor_product",
    "radial_mlp",
    "symmetric_contraction",
    "readout",
]
SUPPORTED_INTERACTIONS = INTERACTION_CLASSES
"""Interaction classes :func:`read_layout` understands, at any position."""
SELECTOR_INTERACTIONS = SELECTOR_INTERACTION_CLASSES
"""Interaction blocks whose ``skip_tp`` maps the message (``linear`` output x element one-hot)
to the product's input, instead of mapping the node features to the next layer (residual)."""
READOUT_LINEARS = ("linear", "linear_1", "linear_mid", "linear_2")
"""e3nn linears of a readout block; the first present of ``linear``/``linear_1`` reads features."""
DERIVED_STATE = ("output_mask", "_w3j", "U_matrix_", "_zeroed", "coefficients_")
"""Buffers a mace/e3nn module derives from its irreps; a rebuilt module computes its own."""


@dataclass(frozen=True)
class Operand:
    """One operand of a weighted module: its irreps and the channel space its channels are.

    Attributes:
        irreps: the module's own entries for this operand.
        space: channel space of its channels; ``None``: a fixed operand pruning keeps whole
            (element one-hot, edge attributes, readout hidden and output features).
        parts: per entry, the keys of the equal blocks of ``mul / len(keys)`` channels it
            concatenates; channel c of a block is channel c of ``space``. ``(l, p)`` for a plain
            entry; ``(l1, p1, l2, p2, l, p)`` for an edge-tensor-product path output, several
            in one entry where a linear reads e3nn-simplified path outputs (older pickles).
            Old and new operands are matched block by block through these keys.
        degree_space: the space whose per-L scores this operand's weights count towards, by the
            L of their entry; ``None``: not scored by L.
    """

    irreps: tuple[Irrep, ...]
    space: str | None
    parts: tuple[tuple[Hashable, ...], ...]
    degree_space: str | None = None

    def block_size(self, entry: int) -> int:
        """Channels per block of ``entry``."""
        return self.irreps[entry][0] // len(self.parts[entry])


@dataclass(frozen=True)
class E3nnWeight:
    """The flat weight of an e3nn ``Linear`` (operands in, out) or ``TensorProduct`` (in1, in2,
    out): ``rows`` copies (``[rows, weight_numel]``, radial-MLP rows) or one (``[weight_numel]``).

    Attributes:
        parameter: state-dict name.
        module: the e3nn module whose instructions ``paths`` are (``interactions.t.conv_tp`` for
            the radial MLP's last layer).
        kind: ``embedding``, ``linear``, ``skip``, ``tensor_product`` or ``readout``.
        operands: per operand of the module.
        paths: weighted paths in instruction order.
        rows: leading rows of the parameter (1: the module's own flat weight).
        per_edge: evaluated once per edge (else once per atom).
    """

    parameter: str
    module: str
    kind: Kind
    operands: tuple[Operand, ...]
    paths: tuple[Path, ...]
    rows: int = 1
    per_edge: bool = False

    @property
    def key(self) -> Hashable:
        """Identity shared by this weight in the original and in the pruned model."""
        return self.parameter


@dataclass(frozen=True)
class ContractionWeight:
    """Weights ``[elements, params, channels]`` of correlation order ``nu`` of the contraction
    producing irrep ``irrep_out`` (``(l, p)``) in ``product``; ``operand``: its input (the
    coupling irreps, channels of ``message.t``)."""

    parameter: str
    module: str
    product: str
    operand: Operand
    irrep_out: tuple[int, int]
    nu: int
    shape: tuple[int, ...]
    per_edge: bool = False
    kind: Kind = "symmetric_contraction"

    @property
    def key(self) -> Hashable:
        """Identity shared with the pruned model (contraction indices shift with max_L)."""
        return (self.product, self.irrep_out, self.nu)


@dataclass(frozen=True)
class DenseWeight:
    """A plain ``[in, out]`` layer no channel space runs through (radial-MLP hidden layers)."""

    parameter: str
    shape: tuple[int, ...]
    per_edge: bool = True
    kind: Kind = "radial_mlp"

    @property
    def key(self) -> Hashable:
        """Identity shared with the pruned model."""
        return self.parameter


Record = E3nnWeight | ContractionWeight | DenseWeight


@dataclass(frozen=True)
class MaceLayout:
    """A MACE's channel spaces (irreps by name, in network order) and weight records."""

    spaces: dict[str, tuple[Irrep, ...]]
    weights: tuple[Record, ...]
    num_channels: int
    max_L: int
    max_ell: int


def selects_message(block: torch.nn.Module) -> bool:
    """Whether ``block.skip_tp`` acts on the message (:data:`SELECTOR_INTERACTIONS`); then the
    block has a ``selector.t`` channel space and no residual into ``node.t+1``."""
    return type(block).__name__ in SELECTOR_INTERACTIONS


def check_supported(config: dict[str, Any]) -> None:
    """Refuse model configurations (``describe_mace_model``) the layout does not cover.

    Raises:
        ModelFileError: one message naming every unsupported setting.
    """
    problems = [
        f"{key}={config.get(key)!r}"
        for key, ok in (
            ("interaction_cls", config.get("interaction_cls") in SUPPORTED_INTERACTIONS),
            (
                "interaction_cls_first",
                config.get("interaction_cls_first") in SUPPORTED_INTERACTIONS,
            ),
            ("heads", len(config.get("heads") or ["default"]) == 1),
            ("edge_irreps", config.get("edge_irreps") is None),
            ("embedding_specs", config.get("embedding_specs") is None),
            ("use_agnostic_product", not config.get("use_agnostic_product")),
            ("use_last_readout_only", not config.get("use_last_readout_only")),
        )
        if not ok
    ]
    if problems:
        raise ModelFileError(
            f"cannot prune this MACE ({', '.join(problems)}): pruning supports single-head "
            f"ScaleShiftMACE models with {' or '.join(SUPPORTED_INTERACTIONS)} interactions"
        )


def read_layout(model: torch.nn.Module) -> MaceLayout:
    """Walk a plain mace-torch ``ScaleShiftMACE`` once: its channel spaces and weight records.

    Records come in scoring order: embedding; per layer t: ``linear_up``, ``linear``,
    ``skip_tp``, radial-MLP hidden layers, edge tensor product, contractions, product linear,
    readout linears. (Importance sums float scores in this order; keep it stable.)

    Raises:
        ModelFileError: an unsupported configuration or block type.
    """
    config = describe_mace_model(model)
    check_supported(config)
    tree: Any = model  # mace-torch's module attributes
    emb = tree.node_embedding.linear
    spaces = {"node.0": irreps_entries(emb.irreps_out)}
    weights: list[Record] = [
        _e3nn(
            "node_embedding.linear", emb, "embedding", _fixed(emb.irreps_in), _plain(emb, "node.0")
        )
    ]
    for t, (block, product) in enumerate(zip(tree.interactions, tree.products)):
        for part in (_interaction(t, block), _product(t, product), _readout(t, tree.readouts[t])):
            spaces.update(part[0])
            weights += part[1]
    hidden = irreps_entries(config["hidden_irreps"])
    return MaceLayout(
        spaces=spaces,
        weights=tuple(weights),
        num_channels=hidden[0][0],
        max_L=max(ell for _, ell, _ in hidden),
        max_ell=int(config["max_ell"]),
    )


def _plain(
    module: Any, space: str | None, attr: str = "irreps_out", *, scored: bool = True
) -> Operand:
    """Operand whose entries are the entries of ``space`` (``None``: fixed)."""
    entries = irreps_entries(getattr(module, attr))
    parts = tuple(((ell, p),) for _, ell, p in entries)
    return Operand(entries, space, parts, space if scored else None)


def _fixed(irreps: Any, *, degree_space: str | None = None) -> Operand:
    entries = irreps_entries(irreps)
    return Operand(entries, None, tuple(((ell, p),) for _, ell, p in entries), degree_space)


def _e3nn(name: str, module: Any, kind: Kind, *operands: Operand, **options) -> E3nnWeight:
    paths = paths_from_e3nn(module)
    return E3nnWeight(f"{name}.weight", name, kind, operands, paths, **options)


def _path_outputs(tp: Any, space: str) -> Operand:
    """The edge tensor product's output: one entry per (uvu) path, channels of ``space``."""
    in1, in2, out = (
        irreps_entries(getattr(tp, a)) for a in ("irreps_in1", "irreps_in2", "irreps_out")
    )
    keys: dict[int, list[Hashable]] = {}
    for ins in tp.instructions:
        keys.setdefault(ins.i_out, []).append(
            in1[ins.i_in1][1:] + in2[ins.i_in2][1:] + out[ins.i_out][1:]
        )
    if sorted(keys) != list(range(len(out))) or any(len(k) != 1 for k in keys.values()):
        raise ModelFileError("edge tensor product outputs are not one entry per path")
    return Operand(out, space, tuple((keys[i][0],) for i in range(len(out))))


def _merged(irreps: Any, mid: Operand) -> Operand:
    """``mid`` as read by a linear whose input may merge consecutive equal irreps (e3nn
    ``simplify``, as older mace-torch versions stored it)."""
    entries, parts, i = irreps_entries(irreps), [], 0
    for mul, ell, p in entries:
        keys, total = [], 0
        while total < mul and i < len(mid.irreps) and mid.irreps[i][1:] == (ell, p):
            keys.append(mid.parts[i][0])
            total, i = total + mid.irreps[i][0], i + 1
        sizes = {mid.irreps[j][0] for j in range(i - len(keys), i)}
        if total != mul or len(sizes) != 1:
            raise ModelFileError(f"linear input {irreps} does not match edge paths {mid.irreps}")
        parts.append(tuple(keys))
    if i != len(mid.irreps):
        raise ModelFileError(f"linear input {irreps} does not read every edge path {mid.irreps}")
    return Operand(entries, mid.space, tuple(parts))


def _interaction(t: int, block: Any) -> tuple[dict, list[Record]]:
    """Spaces ``edge.t`` (``selector.t``) ``message.t`` and the records of ``interactions[t]``."""
    if type(block).__name__ not in SUPPORTED_INTERACTIONS:
        raise ModelFileError(f"cannot read interaction block {type(block).__name__}")
    pre, node, edge, msg = f"interactions.{t}", f"node.{t}", f"edge.{t}", f"message.{t}"
    up, lin, skip, tp = block.linear_up, block.linear, block.skip_tp, block.conv_tp
    mixed = f"selector.{t}" if selects_message(block) else msg  # what `linear` writes
    skip_in, skip_out = (mixed, msg) if selects_message(block) else (node, f"node.{t + 1}")
    spaces = {edge: irreps_entries(up.irreps_out), mixed: irreps_entries(lin.irreps_out)}
    spaces[msg] = irreps_entries(skip.irreps_out if selects_message(block) else lin.irreps_out)
    mid = _path_outputs(tp, edge)
    skip_ops = (
        _plain(skip, skip_in, "irreps_in1"),
        _fixed(skip.irreps_in2),
        _plain(skip, skip_out),
    )
    hs, last = block.conv_tp_weights.hs, len(block.conv_tp_weights.hs) - 2
    edge_tp = E3nnWeight(
        parameter=f"{pre}.conv_tp_weights.layer{last}.weight",
        module=f"{pre}.conv_tp",
        kind="tensor_product",
        operands=(_plain(tp, edge, "irreps_in1"), _fixed(tp.irreps_in2, degree_space=msg), mid),
        paths=paths_from_e3nn(tp),
        rows=hs[last],
        per_edge=True,
    )
    records: list[Record] = [
        _e3nn(f"{pre}.linear_up", up, "linear", _plain(up, node, "irreps_in"), _plain(up, edge)),
        _e3nn(f"{pre}.linear", lin, "linear", _merged(lin.irreps_in, mid), _plain(lin, mixed)),
        _e3nn(f"{pre}.skip_tp", skip, "skip", *skip_ops),
        *(
            DenseWeight(f"{pre}.conv_tp_weights.layer{i}.weight", (hs[i], hs[i + 1]))
            for i in range(last)
        ),
        edge_tp,
    ]
    return spaces, records


def _product(t: int, product: Any) -> tuple[dict, list[Record]]:
    """Space ``node.t+1`` and the records of ``products[t]`` (contractions, then its linear)."""
    msg, sc, lin = f"message.{t}", product.symmetric_contractions, product.linear
    coupling = _plain(sc, msg, "irreps_in", scored=False)
    records: list[Record] = []
    for k, ((_, ir), contraction) in enumerate(zip(sc.irreps_out, sc.contractions)):
        module, corr = (
            f"products.{t}.symmetric_contractions.contractions.{k}",
            contraction.correlation,
        )
        for name, weight in contraction.named_parameters():  # weights_max: nu = correlation
            nu = corr if name == "weights_max" else corr - 1 - int(name.split(".")[-1])
            records.append(
                ContractionWeight(
                    parameter=f"{module}.{name}",
                    module=module,
                    product=f"products.{t}",
                    operand=coupling,
                    irrep_out=(ir.l, ir.p),
                    nu=nu,
                    shape=tuple(weight.shape),
                )
            )
    out = _plain(lin, f"node.{t + 1}")
    records.append(
        _e3nn(
            f"products.{t}.linear", lin, "linear", _plain(lin, msg, "irreps_in", scored=False), out
        )
    )
    return {f"node.{t + 1}": out.irreps}, records


def _readout(t: int, readout: Any) -> tuple[dict, list[Record]]:
    """Records of ``readouts[t]``: the linear reading ``node.t+1``, then fixed linears."""
    names = [n for n in READOUT_LINEARS if getattr(readout, n, None) is not None]
    reader = next((n for n in names if n in ("linear", "linear_1")), None)
    if reader is None:
        raise ModelFileError(f"cannot read readout block {type(readout).__name__}")
    records: list[Record] = []
    for name in names:
        module = getattr(readout, name)
        first = (
            _plain(module, f"node.{t + 1}", "irreps_in")
            if name == reader
            else _fixed(module.irreps_in)
        )
        records.append(
            _e3nn(f"readouts.{t}.{name}", module, "readout", first, _fixed(module.irreps_out))
        )
    return {}, records
