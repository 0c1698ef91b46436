"""Index maths for pruning e3nn / mace-torch weights by whole (channel, L) irrep blocks.

Everything here is a pure function of plain data (tuples, tensors) or reads (never writes) the
instruction lists of e3nn modules. Vocabulary:

* **irreps**: a sequence of entries ``(mul, l, parity)`` (e3nn's ``mul x l p``) in e3nn's
  ``mul_ir`` layout: the features of entry ``i`` occupy ``mul * (2l + 1)`` consecutive components,
  channel-major (``[..., mul, 2l + 1]`` flattened).
* **selection**: how the entries of a NEW (pruned) irreps come from an OLD one: one
  ``(old_entry, kept_channels)`` per new entry, ``kept_channels`` being old channel indices in the
  order the new entry stores them.
* **path**: one weighted instruction of an e3nn ``Linear`` or ``TensorProduct``. Its weights are a
  ``shape`` block of the module's flat weight vector (blocks concatenated in instruction order);
  ``axes[a]`` names the operand (0: input 1, 1: input 2 / the output of a Linear, 2: the output of
  a tensor product) whose channels weight axis ``a`` runs over; ``weight`` is e3nn's normalisation
  constant ``path_weight`` (the module multiplies the path's output by it).

The last part maps the parameters of a mace-torch MACE onto its channel spaces
(:func:`channel_spaces`, :func:`weight_slices`; the spaces are explained in
:mod:`macelerate.compress.importance`).

Slicing a weight to new irreps keeps, for every new path, the sub-block of the matching old path at
the kept channels and multiplies it by ``old.weight / new.weight``: e3nn normalises each path by its
fan-in (``1 / sqrt(#inputs)``), which shrinks with the channels, and this factor keeps the pruned
module's output equal to the unpruned module's output with the removed inputs set to zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Irrep = tuple[int, int, int]
"""One irreps entry: (multiplicity, l, parity +1/-1)."""
Selection = tuple[tuple[int, tuple[int, ...]], ...]
"""Per new entry: (old entry index, kept old channel indices)."""

TP_MODE_AXES = {"uvw": (0, 1, 2), "uvu": (0, 1), "uvv": (0, 1), "uuw": (0, 2), "uuu": (0,)}
"""Operand of each weight axis per e3nn connection mode (u: input 1, v: input 2, w: output)."""


@dataclass(frozen=True)
class Path:
    """One weighted e3nn instruction: entries per operand, weight-block axes and shape, norm."""

    entries: tuple[int, ...]
    axes: tuple[int, ...]
    shape: tuple[int, ...]
    weight: float

    @property
    def numel(self) -> int:
        """Number of weights of this path."""
        return int(np.prod(self.shape)) if self.shape else 1


def irreps_entries(irreps: Any) -> tuple[Irrep, ...]:
    """``(mul, l, parity)`` entries of an e3nn ``Irreps`` (or anything ``o3.Irreps`` accepts)."""
    if isinstance(irreps, tuple) and all(isinstance(e, tuple) and len(e) == 3 for e in irreps):
        return irreps
    from e3nn import o3

    return tuple((mul, ir.l, ir.p) for mul, ir in o3.Irreps(irreps))


def irreps_string(irreps: Sequence[Irrep]) -> str:
    """e3nn string of ``(mul, l, parity)`` entries, e.g. ``"8x0e+8x1o"``."""
    return "+".join(f"{mul}x{ell}{'e' if p > 0 else 'o'}" for mul, ell, p in irreps)


def select_by_ir(
    old: Sequence[Irrep], new: Sequence[Irrep], kept: Sequence[int] | None = None
) -> Selection:
    """Match every new entry to the one old entry with the same (l, parity).

    Args:
        old, new: irreps with each (l, parity) at most once (e3nn-simplified irreps).
        kept: old channel indices every new entry keeps (all entries share the channel set);
            ``None`` keeps every old channel (the multiplicities must then be equal).

    Raises:
        ValueError: a new entry has no unique old counterpart, or ``kept`` does not fit its mul.
    """
    selection = []
    for mul, ell, p in new:
        matches = [i for i, (_, lo, po) in enumerate(old) if (lo, po) == (ell, p)]
        if len(matches) != 1:
            raise ValueError(
                f"irrep {ell},{p} occurs {len(matches)} times in {old}; need exactly 1"
            )
        channels = tuple(range(old[matches[0]][0])) if kept is None else tuple(kept)
        if len(channels) != mul or max(channels, default=-1) >= old[matches[0]][0]:
            raise ValueError(f"kept channels {channels} do not fit {mul}x{ell} from {old}")
        selection.append((matches[0], channels))
    return tuple(selection)


def feature_index(old: Sequence[Irrep], selection: Selection) -> torch.Tensor:
    """Old feature components the new layout keeps, in new order: ``new_x = old_x[..., index]``.

    Returns:
        [dim of the new irreps] int64 indices into the old flat feature axis.
    """
    offsets = np.concatenate([[0], np.cumsum([m * (2 * ell + 1) for m, ell, _ in old])])
    parts = []
    for old_entry, channels in selection:
        dim = 2 * old[old_entry][1] + 1
        block = offsets[old_entry] + np.asarray(channels, dtype=np.int64)[:, None] * dim
        parts.append((block + np.arange(dim)[None, :]).reshape(-1))  # [kept, dim] channel-major
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(flat, dtype=torch.int64)


def paths_from_e3nn(module: torch.nn.Module) -> tuple[Path, ...]:
    """The weighted paths of an e3nn ``o3.Linear`` (operands in, out) or ``TensorProduct``.

    Raises:
        ValueError: a tensor-product connection mode outside :data:`TP_MODE_AXES`.
    """
    paths = []
    for ins in module.instructions:
        if hasattr(ins, "i_in"):  # o3.Linear: path_shape (mul_in, mul_out)
            paths.append(
                Path((ins.i_in, ins.i_out), (0, 1), tuple(ins.path_shape), ins.path_weight)
            )
        elif ins.has_weight:
            if ins.connection_mode not in TP_MODE_AXES:
                raise ValueError(f"cannot slice connection mode {ins.connection_mode!r}")
            entries = (ins.i_in1, ins.i_in2, ins.i_out)
            axes = TP_MODE_AXES[ins.connection_mode]
            paths.append(Path(entries, axes, tuple(ins.path_shape), ins.path_weight))
    return tuple(paths)


def _offsets(paths: Sequence[Path]) -> list[int]:
    return [int(x) for x in np.concatenate([[0], np.cumsum([p.numel for p in paths])])[:-1]]


def flat_weight_index(
    old_paths: Sequence[Path], new_paths: Sequence[Path], selections: Sequence[Selection]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every weight of the new module comes from in the old flat weight vector.

    Args:
        old_paths, new_paths: paths of the old and new module (see :func:`paths_from_e3nn`).
        selections: one selection per operand (new entries of that operand -> old entries).

    Returns:
        ``(index, scale)``, both [new weight_numel]: ``new_w = old_w[..., index] * scale``.

    Raises:
        ValueError: a new path has no old path on the selected entries (the selection would
            create weights that did not exist).
    """
    lookup = {(p.entries, p.axes): (p, off) for p, off in zip(old_paths, _offsets(old_paths))}
    index, scale = [], []
    for path in new_paths:
        old_entries = tuple(selections[k][e][0] for k, e in enumerate(path.entries))
        if (old_entries, path.axes) not in lookup:
            raise ValueError(f"new path {path} has no old path on entries {old_entries}")
        old, offset = lookup[(old_entries, path.axes)]
        kept = [selections[k][path.entries[k]][1] for k in path.axes]
        if tuple(len(c) for c in kept) != path.shape:
            raise ValueError(f"kept channels {kept} do not fit path shape {path.shape}")
        grid = np.ravel_multi_index(np.ix_(*kept), old.shape) if kept else np.zeros(1, np.int64)
        index.append(offset + grid.reshape(-1))
        scale.append(np.full(path.numel, old.weight / path.weight))
    if not index:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
    return (
        torch.as_tensor(np.concatenate(index), dtype=torch.int64),
        torch.as_tensor(np.concatenate(scale), dtype=torch.float64),
    )


def flat_weight_channels(paths: Sequence[Path], operand: int) -> torch.Tensor:
    """Channel of ``operand`` each flat weight reads or writes, -1 where no axis runs over it.

    Returns:
        [weight_numel] int64.
    """
    parts = []
    for path in paths:
        grid = np.indices(path.shape).reshape(len(path.shape), -1) if path.shape else None
        if operand in path.axes and grid is not None:
            parts.append(grid[path.axes.index(operand)])
        else:
            parts.append(np.full(path.numel, -1))
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(flat, dtype=torch.int64)


def flat_weight_degrees(
    paths: Sequence[Path], operand: int, irreps: Sequence[Irrep]
) -> torch.Tensor:
    """Degree l of the ``operand`` entry of the path each flat weight belongs to.

    Returns:
        [weight_numel] int64.
    """
    parts = [np.full(p.numel, irreps[p.entries[operand]][1]) for p in paths]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(flat, dtype=torch.int64)


def select_tp_outputs(
    old_paths: Sequence[Path],
    new_paths: Sequence[Path],
    old_out: Sequence[Irrep],
    new_out: Sequence[Irrep],
    input_selections: Sequence[Selection],
) -> Selection:
    """Selection of a tensor product's output entries when each path writes its own entry.

    mace's ``conv_tp`` output (``irreps_mid``) holds one entry per path (``uvu``: its channels are
    the channels of input 1). A new entry maps to the old entry written by the old path on the
    same (selected) input entries with the same output (l, parity); it keeps input 1's channels.

    Raises:
        ValueError: a new path has no old counterpart.
    """
    selection: dict[int, tuple[int, tuple[int, ...]]] = {}
    for path in new_paths:
        in1, in2 = (input_selections[k][path.entries[k]][0] for k in (0, 1))
        want = new_out[path.entries[2]][1:]
        matches = [
            q.entries[2]
            for q in old_paths
            if q.entries[:2] == (in1, in2) and old_out[q.entries[2]][1:] == want
        ]
        if len(matches) != 1:
            raise ValueError(f"new path {path} matches {len(matches)} old paths")
        selection[path.entries[2]] = (matches[0], input_selections[0][path.entries[0]][1])
    return tuple(selection[i] for i in range(len(new_out)))


def coupling_components(old: Sequence[Irrep], selection: Selection) -> torch.Tensor:
    """Components of an old symmetric-contraction coupling basis (one copy of each old entry's
    irrep) that the new coupling irreps keep, in new order.

    Returns:
        [sum of (2l+1) over new entries] int64 indices into the old ``num_ell`` axis of ``U``.
    """
    single = tuple((1, ell, p) for _, ell, p in old)
    return feature_index(single, tuple((entry, (0,)) for entry, _ in selection))


def restrict_u(u: torch.Tensor, components: torch.Tensor, *, nu: int) -> torch.Tensor:
    """Restrict the ``nu`` coupling axes of a mace ``U_matrix_nu`` to kept input components.

    Args:
        u: ``[(2L+1,) num_ell x nu, num_params]``; the leading axis is absent for L = 0.
        components: [num_ell_new] kept indices into ``num_ell``.
    """
    first = u.dim() - 1 - nu
    for axis in range(first, first + nu):
        u = u.index_select(axis, components)
    return u


def basis_map(u_restricted: torch.Tensor, u_new: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Least-squares map of old U-basis weights onto the new U basis.

    Solves ``U_new @ X ~= U_restricted`` (each flattened to [components, num_params]), so that
    ``w_new = X @ w_old`` reproduces the old contraction on the kept input components.

    Args:
        u_restricted: [..., P_old] old basis restricted with :func:`restrict_u`.
        u_new: [..., P_new] the new model's basis (same leading shape).

    Returns:
        ``(X [P_new, P_old] float64 on the CPU, relative residual ||U_new X - U_r|| / ||U_r||)``:
        0 when exact (or when U_r vanishes), 1 when nothing of U_r is representable.
    """
    a = u_new.detach().cpu().reshape(-1, u_new.shape[-1]).to(torch.float64)
    b = u_restricted.detach().cpu().reshape(-1, u_restricted.shape[-1]).to(torch.float64)
    if a.abs().max() == 0 or b.abs().max() == 0:
        residual = 0.0 if b.abs().max() == 0 else 1.0
        return torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64), residual
    x = torch.linalg.lstsq(a, b, driver="gelsd").solution
    residual = float(torch.linalg.norm(a @ x - b) / torch.linalg.norm(b))
    return x, residual


# --- the channel spaces of a mace-torch MACE (see macelerate.compress.importance) ---

SELECTOR_INTERACTIONS = ("RealAgnosticInteractionBlock",)
"""Interaction blocks whose ``skip_tp`` maps the message (``linear`` output x element one-hot)
to the product's input, instead of mapping the node features to the next layer (residual)."""


def selects_message(block: torch.nn.Module) -> bool:
    """Whether ``block.skip_tp`` acts on the message (:data:`SELECTOR_INTERACTIONS`); then the
    block has a ``selector.t`` channel space and no residual into ``node.t+1``."""
    return type(block).__name__ in SELECTOR_INTERACTIONS


def channel_spaces(model: torch.nn.Module) -> dict[str, tuple[Irrep, ...]]:
    """Irreps of every channel space of a plain MACE, by name (``node.t``, ``edge.t``,
    ``selector.t`` for :func:`selects_message` blocks, ``message.t``; see
    :mod:`macelerate.compress.importance`)."""
    spaces = {"node.0": irreps_entries(model.node_embedding.linear.irreps_out)}
    for t, (block, product) in enumerate(zip(model.interactions, model.products)):
        selector = selects_message(block)
        spaces[f"edge.{t}"] = irreps_entries(block.linear_up.irreps_out)
        if selector:
            spaces[f"selector.{t}"] = irreps_entries(block.linear.irreps_out)
        writer = block.skip_tp if selector else block.linear  # of the product's input
        spaces[f"message.{t}"] = irreps_entries(writer.irreps_out)
        spaces[f"node.{t + 1}"] = irreps_entries(product.linear.irreps_out)
    return spaces


@dataclass(frozen=True)
class WeightSlice:
    """How one parameter reads or writes one channel space.

    Attributes:
        parameter: state-dict name of the parameter.
        space: channel-space name.
        channels: [numel] channel of ``space`` each element (row-major) touches, -1 for none;
            ``None``: the parameter only counts towards the space's L scores.
        degrees: [numel] L of ``space`` each element touches, or ``None`` (not L-specific).
    """

    parameter: str
    space: str
    channels: torch.Tensor | None
    degrees: torch.Tensor | None


def _e3nn_slices(name: str, module: torch.nn.Module, operands: dict[int, str], irreps) -> list:
    paths = paths_from_e3nn(module)
    return [
        WeightSlice(
            f"{name}.weight",
            space,
            flat_weight_channels(paths, k),
            flat_weight_degrees(paths, k, irreps_entries(irreps[k])) if irreps[k] else None,
        )
        for k, space in operands.items()
    ]


def weight_slices(model: torch.nn.Module) -> list[WeightSlice]:
    """Every (parameter, space) pair of a plain MACE whose elements belong to channel blocks."""
    emb = model.node_embedding.linear
    slices = _e3nn_slices("node_embedding.linear", emb, {1: "node.0"}, [None, emb.irreps_out])
    for t, (block, product) in enumerate(zip(model.interactions, model.products)):
        node, edge, msg, out = f"node.{t}", f"edge.{t}", f"message.{t}", f"node.{t + 1}"
        pre = f"interactions.{t}"
        up, lin, skip = block.linear_up, block.linear, block.skip_tp
        mixed = f"selector.{t}" if selects_message(block) else msg  # linear's output space
        slices += _e3nn_slices(
            f"{pre}.linear_up", up, {0: node, 1: edge}, [up.irreps_in, up.irreps_out]
        )
        slices += _e3nn_slices(f"{pre}.linear", lin, {0: edge, 1: mixed}, [None, lin.irreps_out])
        skip_ops = {0: mixed, 2: msg} if selects_message(block) else {0: node, 2: out}
        slices += _e3nn_slices(
            f"{pre}.skip_tp", skip, skip_ops, [skip.irreps_in1, None, skip.irreps_out]
        )
        paths = paths_from_e3nn(block.conv_tp)
        rows = block.conv_tp_weights.hs[-2]
        last = f"{pre}.conv_tp_weights.layer{len(block.conv_tp_weights.hs) - 2}.weight"
        tp = block.conv_tp

        def for_rows(v: torch.Tensor, rows: int = rows) -> torch.Tensor:  # [numel] -> [h * numel]
            return v.expand(rows, -1).reshape(-1)

        slices.append(
            WeightSlice(
                last,
                edge,
                for_rows(flat_weight_channels(paths, 0)),
                for_rows(flat_weight_degrees(paths, 0, irreps_entries(tp.irreps_in1))),
            )
        )
        sh_degrees = for_rows(flat_weight_degrees(paths, 1, irreps_entries(tp.irreps_in2)))
        slices.append(WeightSlice(last, msg, None, sh_degrees))  # ell of the edge attributes
        for k, contraction in enumerate(product.symmetric_contractions.contractions):
            for pname, weight in contraction.named_parameters():
                channels = torch.arange(weight.shape[-1]).expand(weight.shape).reshape(-1)
                full = f"products.{t}.symmetric_contractions.contractions.{k}.{pname}"
                slices.append(WeightSlice(full, msg, channels, None))
        plin = product.linear
        slices += _e3nn_slices(
            f"products.{t}.linear", plin, {0: msg, 1: out}, [None, plin.irreps_out]
        )
        readout = model.readouts[t]
        name, first = (
            ("linear_1", readout.linear_1)
            if hasattr(readout, "linear_1")
            else ("linear", readout.linear)
        )
        slices += _e3nn_slices(f"readouts.{t}.{name}", first, {0: out}, [first.irreps_in, None])
    return slices


def path_macs(path: Path, dims: Sequence[int], *, linear: bool) -> int:
    """Dense multiply-add estimate of one path per evaluation.

    Args:
        dims: irrep dimensions (2l+1) of the path's operands (in, out for a Linear; in1, in2, out
            for a tensor product).
        linear: True for an ``o3.Linear`` path (a [mul_in, mul_out] matmul per component).

    Returns:
        Linear: ``mul_in * mul_out * d``. Tensor product: the Clebsch-Gordan contraction
        ``pairs * d1 * d2 * d3`` plus the weighting ``numel * d3``, pairs being the number of
        (input-1, input-2) channel pairs the path couples.
    """
    if linear:
        return path.numel * dims[-1]
    pairs = int(np.prod([n for n, a in zip(path.shape, path.axes) if a in (0, 1)]))
    return pairs * dims[0] * dims[1] * dims[2] + path.numel * dims[2]


def contraction_macs(*, channels: int, dim_out: int, num_ell: int, params: dict[int, int]) -> int:
    """Dense multiply-add estimate of one mace ``Contraction`` (one output irrep) per atom.

    Args:
        params: number of basis weights per correlation order nu.

    Returns:
        ``sum_nu channels * dim_out * num_ell**nu * (P_nu + 1)``: weighting U by the per-element
        weights, then contracting with the features.
    """
    return sum(channels * dim_out * num_ell**nu * (p + 1) for nu, p in params.items())


def mlp_macs(widths: Sequence[int]) -> int:
    """Multiply-adds of a bias-free MLP with layer widths ``widths``."""
    return int(sum(a * b for a, b in zip(widths, widths[1:])))
