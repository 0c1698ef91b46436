"""Index maths for pruning e3nn / mace-torch weights by whole (channel, L) irrep blocks.

Everything here is a pure function of plain data (tuples, tensors, layout records). Vocabulary
(irreps entries and paths: :mod:`macelerate.mace.irreps`):

* **selection**: how the entries of a NEW (pruned) irreps come from an OLD one: one
  ``(old_entry, kept_channels)`` per new entry, ``kept_channels`` being old channel indices in the
  order the new entry stores them.

Slicing a weight to new irreps keeps, for every new path, the sub-block of the matching old path at
the kept channels and multiplies it by ``old.weight / new.weight``: e3nn normalises each path by its
fan-in (``1 / sqrt(#inputs)``), which shrinks with the channels, and this factor keeps the pruned
module's output equal to the unpruned module's output with the removed inputs set to zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from macelerate.mace.irreps import Irrep, Path
from macelerate.mace.layout import Operand

Selection = tuple[tuple[int, tuple[int, ...]], ...]
"""Per new entry: (old entry index, kept old channel indices)."""


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


def select_operand(old: Operand, new: Operand, kept: Sequence[int] | None = None) -> Selection:
    """Selection of a new operand's entries from an old one, matched block by block.

    Every new entry concatenates blocks (``Operand.parts``); each comes from the old block with the
    same key, at ``kept`` channels (``None``: all of them). Plain operands (one ``(l, p)`` block
    per entry) give :func:`select_by_ir`; edge-tensor-product outputs match by path; a linear
    input that merges several path outputs into one entry (older mace-torch pickles) keeps the
    kept channels of each merged block at that block's offset.

    Args:
        old, new: the same operand of the original and of the pruned module.
        kept: old channel indices of the operand's space every block keeps.

    Raises:
        ValueError: a new block has no old counterpart, a new entry's blocks lie in different old
            entries, or ``kept`` does not fit.
    """
    where = {}
    for entry, keys in enumerate(old.parts):
        size = old.block_size(entry)
        where.update({key: (entry, i * size, size) for i, key in enumerate(keys)})
    selection = []
    for entry, keys in enumerate(new.parts):
        missing = [key for key in keys if key not in where]
        if missing or len({where[key][0] for key in keys}) != 1:
            raise ValueError(f"new blocks {keys} have no single old entry in {old.parts}")
        channels: list[int] = []
        for key in keys:
            _, offset, size = where[key]
            chosen = range(size) if kept is None else kept
            if len(chosen) != new.block_size(entry) or max(chosen, default=-1) >= size:
                raise ValueError(f"kept channels {tuple(chosen)} do not fit {new.irreps[entry]}")
            channels += [offset + c for c in chosen]
        selection.append((where[keys[0]][0], tuple(channels)))
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


def flat_weight_channels(
    paths: Sequence[Path], operand: int, sizes: Sequence[int] | None = None
) -> torch.Tensor:
    """Channel of ``operand`` each flat weight reads or writes, -1 where no axis runs over it.

    Args:
        sizes: per entry of the operand, its block size (channels of an entry that concatenates
            blocks count modulo it); ``None``: one block per entry.

    Returns:
        [weight_numel] int64.
    """
    parts = []
    for path in paths:
        grid = np.indices(path.shape).reshape(len(path.shape), -1) if path.shape else None
        if operand in path.axes and grid is not None:
            channels = grid[path.axes.index(operand)]
            parts.append(channels if sizes is None else channels % sizes[path.entries[operand]])
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
