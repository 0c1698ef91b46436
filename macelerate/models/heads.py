"""Extra heads on a mace-torch backbone's node features: direct forces, direct stress, confidence.

All heads read mace's ``node_feats`` output: [n_atoms, D], the hidden features of every layer
concatenated, with irreps :func:`node_feats_irreps` (e3nn layout). Direct heads are equivariant
by construction (e3nn linear maps, gates and tensor products) and return Cartesian (x, y, z)
tensors; :func:`cartesian_basis` maps e3nn's ``1o`` component order to Cartesian.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from macelerate._mace import import_mace, quiet_model_construction

if TYPE_CHECKING:
    from e3nn import o3


def _e3nn() -> Any:
    """``e3nn`` imported after mace-torch (see :mod:`macelerate._mace`)."""
    import_mace()
    import e3nn.nn
    import e3nn.o3

    return e3nn


def node_feats_irreps(model: torch.nn.Module) -> o3.Irreps:
    """Irreps of a mace-torch model's ``node_feats`` output (all layers concatenated)."""
    o3 = _e3nn().o3
    irreps = o3.Irreps("")
    products: Any = model.products  # mace-torch's ModuleList (macelerate.mace.contract)
    for product in products:  # a hybrid student's scalar layers name their own irreps_out
        irreps_out = getattr(product, "irreps_out", None)
        irreps = irreps + o3.Irreps(str(irreps_out or product.linear.irreps_out))
    return irreps


def cartesian_basis() -> torch.Tensor:
    """[3, 3] float64 Q with ``v_e3nn = Q @ v_cartesian`` for ``1o`` components.

    e3nn 0.4.4 orders ``1o`` as (x, y, z), so Q is the identity there; older e3nn releases used
    (y, z, x). Reading Q off e3nn's own spherical harmonics keeps the heads right for both.
    """
    o3 = _e3nn().o3
    axes = torch.eye(3, dtype=torch.float64)
    return o3.spherical_harmonics(1, axes, normalize=True, normalization="norm").T.contiguous()


def scatter_per_graph(values: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Sums [n_graphs, ...] of per-item ``values`` [n, ...] over their structure index ``batch``."""
    shape = [n_graphs] + list(values.shape[1:])  # TorchScript-ready (no * unpacking)
    out = torch.zeros(shape, dtype=values.dtype, device=values.device)
    return out.index_add_(0, batch, values)


def remove_net_force(forces: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """``forces`` [n_atoms, 3] minus each structure's mean force (each structure sums to zero)."""
    counts = torch.bincount(batch, minlength=n_graphs).clamp(min=1).to(forces.dtype)
    mean = scatter_per_graph(forces, batch, n_graphs) / counts[:, None]  # [n_graphs, 3]
    return forces - mean[batch]


def per_volume(total: torch.Tensor, cell: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Stress [n_graphs, 3, 3] eV/Å³: ``total`` [n_graphs, 3, 3] eV over each cell's volume.

    ``cell`` is [3 * n_graphs, 3] (rows, Å); structures of zero volume (molecules) get zero.
    """
    volume = torch.linalg.det(cell.view(n_graphs, 3, 3).to(total.dtype)).abs()
    safe = torch.where(volume > 1e-8, volume, torch.ones_like(volume))
    return torch.where(volume[:, None, None] > 1e-8, total / safe[:, None, None], 0.0)


def scalar_feature_columns(irreps: o3.Irreps | str) -> torch.Tensor:
    """Column indices [n_scalars] (int64) of the ``0e`` features in an e3nn layout."""
    o3 = _e3nn().o3
    irreps = o3.Irreps(irreps)
    columns = [
        torch.arange(block.start, block.stop)
        for (_, ir), block in zip(irreps, irreps.slices())
        if ir == o3.Irrep("0e")
    ]
    return torch.cat(columns) if columns else torch.zeros(0, dtype=torch.int64)


class DirectForceHead(torch.nn.Module):
    """Per-atom forces from node features: linear -> gate -> linear to ``1x1o``.

    Args:
        irreps_in: irreps of the node features (must contain ``1o``).
        hidden: multiplicity of the hidden scalars and vectors.
        remove_net_force: subtract each structure's mean force, so forces sum to zero.
    """

    def __init__(
        self, irreps_in: o3.Irreps | str, *, hidden: int = 16, remove_net_force: bool = True
    ) -> None:
        super().__init__()
        e3nn = _e3nn()
        o3 = e3nn.o3
        irreps_in = o3.Irreps(irreps_in)
        if irreps_in.count(o3.Irrep("1o")) == 0:
            raise ValueError(
                f"a direct force head needs 1o node features, the backbone has {irreps_in}; "
                "use max_L >= 1 and num_interactions >= 2"
            )
        with quiet_model_construction():
            self.gate = e3nn.nn.Gate(
                f"{hidden}x0e", [torch.nn.functional.silu],
                f"{hidden}x0e", [torch.sigmoid],
                f"{hidden}x1o",
            )  # fmt: skip
            self.linear_in = o3.Linear(irreps_in, self.gate.irreps_in)
            self.linear_out = o3.Linear(self.gate.irreps_out, "1x1o")
        self.remove_net_force = remove_net_force
        self.register_buffer("to_e3nn", cartesian_basis(), persistent=False)  # [3, 3]

    def forward(self, node_feats: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        """Forces [n_atoms, 3] in eV/Å (Cartesian) from node features [n_atoms, D]."""
        vectors = self.linear_out(self.gate(self.linear_in(node_feats)))  # [n_atoms, 3], e3nn order
        forces = vectors @ self.to_e3nn.to(vectors.dtype)  # row form of Q^T v: Cartesian (x, y, z)
        return remove_net_force(forces, batch, n_graphs) if self.remove_net_force else forces


def _symmetric_basis() -> torch.Tensor:
    """[6, 3, 3] float64 map from ``1x0e + 1x2e`` (e3nn) to symmetric Cartesian 3x3 tensors."""
    from macelerate._torch_state import default_dtype

    o3 = _e3nn().o3
    with default_dtype(torch.float64), quiet_model_construction():
        basis = o3.ReducedTensorProducts("ij=ji", i="1o").change_of_basis  # i, j in e3nn's order
    q = cartesian_basis()
    return torch.einsum("ai,kab,bj->kij", q, basis.to(torch.float64), q)  # Q^T B_k Q


class DirectStressHead(torch.nn.Module):
    """Stress per structure from per-atom ``1x0e + 1x2e`` outputs, summed and divided by volume.

    The per-atom output is a linear map of the node features plus a quadratic one (a tensor
    product of hidden features with themselves), so ``1o``-only backbones (max_L = 1) still give
    anisotropic stress. Structures with zero cell volume (molecules) get zero stress.

    Args:
        irreps_in: irreps of the node features.
        hidden: multiplicity of the hidden 0e / 1o / 2e features entering the tensor product.
    """

    def __init__(self, irreps_in: o3.Irreps | str, *, hidden: int = 16) -> None:
        super().__init__()
        o3 = _e3nn().o3
        irreps_in = o3.Irreps(irreps_in)
        present = {ir for _, ir in irreps_in}
        kinds = [o3.Irrep(name) for name in ("0e", "1o", "2e")]
        mid = o3.Irreps([(hidden, ir) for ir in kinds if ir in present])
        with quiet_model_construction():
            self.linear = o3.Linear(irreps_in, "1x0e+1x2e")
            self.pre = o3.Linear(irreps_in, mid)
            self.square = o3.FullyConnectedTensorProduct(mid, mid, "1x0e+1x2e")
        self.register_buffer("basis", _symmetric_basis(), persistent=False)  # [6, 3, 3]

    def forward(
        self, node_feats: torch.Tensor, batch: torch.Tensor, cell: torch.Tensor, n_graphs: int
    ) -> torch.Tensor:
        """Stress [n_graphs, 3, 3] in eV/Å³ (symmetric).

        Args:
            node_feats: [n_atoms, D] node features.
            batch: [n_atoms] structure index of each atom.
            cell: [3 * n_graphs, 3] lattice vectors as rows, Å.
            n_graphs: number of structures.
        """
        hidden = self.pre(node_feats)
        coefficients = self.linear(node_feats) + self.square(hidden, hidden)  # [n_atoms, 6]
        per_atom = torch.einsum("nk,kij->nij", coefficients, self.basis.to(coefficients.dtype))
        return per_volume(scatter_per_graph(per_atom, batch, n_graphs), cell, n_graphs)


class ConfidenceHead(torch.nn.Module):
    """Per-atom distribution over force-error bins, from DETACHED invariant features.

    The head sees only the ``0e`` part of the node features, detached, so training it never
    changes the backbone. Bins split [0, ``max_error``] eV/Å evenly; the last bin also holds
    larger errors.

    Args:
        irreps_in: irreps of the node features.
        n_bins: number of error bins.
        max_error: upper edge of the last bin in eV/Å.
        hidden: width of the two hidden layers.
    """

    scalar_columns: torch.Tensor  # [n_scalars] int64 columns of the 0e features
    bin_edges: torch.Tensor  # [n_bins + 1] eV/Å

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        *,
        n_bins: int = 50,
        max_error: float = 1.0,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        columns = scalar_feature_columns(irreps_in)
        if columns.numel() == 0:
            raise ValueError(f"a confidence head needs 0e node features, got {irreps_in}")
        self.register_buffer("scalar_columns", columns, persistent=False)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(int(self.scalar_columns.numel()), hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, n_bins),
        )
        edges = torch.linspace(0.0, float(max_error), n_bins + 1, dtype=torch.float64)
        self.register_buffer("bin_edges", edges.to(torch.get_default_dtype()))

    def forward(self, node_feats: torch.Tensor) -> torch.Tensor:
        """Logits [n_atoms, n_bins] of the per-atom force-error norm bins."""
        return self.mlp(node_feats.detach()[:, self.scalar_columns])


def expected_force_error(logits: torch.Tensor, bin_edges: torch.Tensor) -> torch.Tensor:
    """Expected per-atom force-error norm [n_atoms] in eV/Å: softmax(logits) · bin centres."""
    centres = 0.5 * (bin_edges[1:] + bin_edges[:-1])
    return torch.softmax(logits, dim=-1) @ centres.to(logits.dtype)


def force_error_bins(errors: torch.Tensor, bin_edges: torch.Tensor) -> torch.Tensor:
    """Bin index [n_atoms] (int64) of per-atom force-error norms in eV/Å, for a CE loss.

    Errors beyond the last edge fall into the last bin.
    """
    inner_edges = bin_edges[1:-1].to(errors.dtype).contiguous()
    return torch.bucketize(errors.detach().contiguous(), inner_edges, right=True)
