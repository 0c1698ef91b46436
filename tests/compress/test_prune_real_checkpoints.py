"""Pruning every real mace-torch checkpoint in ``../shared/data/models`` (slow).

Each pickled ScaleShiftMACE is pruned by channels (Taylor importance on its own predictions), by
hidden max L (where L > 0; random importance) and by max ell (magnitude importance), as loaded
(float32 or float64). The pruned model (in float64, derived constants recomputed) must give the
same energies and forces in mace-torch's own ``MACECalculator`` as here, and be exactly
equivariant. The GST checkpoint (64x0e+64x1o, whose interaction ``linear`` reads e3nn-simplified
path outputs) is also checked block by block against the zeroed reference (issue 11 item 12).
Structures: two small clusters cut from the checkpoint's own data.
"""

from __future__ import annotations

import functools

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate.compress import apply_plan, prune
from macelerate.errors import ModelFileError
from macelerate.mace.config import build_mace_model, describe_mace_model
from macelerate.mace.layout import DERIVED_STATE, read_layout
from macelerate.models.loading import read_model_file
from tests.compress.test_prune import (
    _check_block_by_block,
    _random_plan,
    assert_exactly_equivariant,
    assert_same_in_mace_calculator,
)

pytestmark = [pytest.mark.slow, pytest.mark.needs_shared_data]

DATA = {
    "go_mace_tutorial": "go_mace_tutorial/test-10.xyz",
    "gst_mace_pr325": "gst_mace_pr325/validate.xyz",
    "mace_solvent_xtb_tutorial": "solvent_xtb_tutorial/solvent_xtb_test.xyz",
}
"""Structures of each checkpoint folder's elements."""
CHECKPOINTS = (
    "go_mace_tutorial/GO_10pct_MACE_swa.model",
    "go_mace_tutorial/GO_full_MACE_swa.model",
    "gst_mace_pr325/mace_swa.model",
    "mace_solvent_xtb_tutorial/mace01.model",
    "mace_solvent_xtb_tutorial/mace01_swa.model",
    "mace_solvent_xtb_tutorial/mace01_swa_compiled.model",
    "mace_solvent_xtb_tutorial/mace02_com1_swa.model",
    "mace_solvent_xtb_tutorial/mace02_com2_swa.model",
    "mace_solvent_xtb_tutorial/mace02_com3_swa.model",
)
GST = "gst_mace_pr325/mace_swa.model"


def _cluster(atoms: Atoms, size: int) -> Atoms:
    """The ``size`` atoms nearest atom 0 (minimum image), as a non-periodic cluster."""
    vectors = atoms.get_distances(0, range(len(atoms)), mic=True, vector=True)  # [n, 3] Å
    nearest = np.argsort(np.linalg.norm(vectors, axis=1), kind="stable")[:size]
    return Atoms(numbers=atoms.numbers[nearest], positions=vectors[nearest])


def _clusters(shared_data, checkpoint: str) -> list[Atoms]:
    frames = ase.io.read(shared_data / DATA[checkpoint.split("/")[0]], ":2")
    return [_cluster(atoms, size) for atoms, size in zip(frames, (10, 14))]


@functools.cache
def _read(path: str) -> torch.nn.Module:
    """Each checkpoint is read once per session (pruning only reads it)."""
    return read_model_file(path)[0]


def _load(shared_data, checkpoint: str) -> torch.nn.Module:
    model = _read(str(shared_data / "models" / checkpoint))
    if type(model).__name__ == "RecursiveScriptModule":
        with pytest.raises(ModelFileError):
            prune(model, channels=8, importance="magnitude")
        pytest.skip("TorchScript export: no mace-torch module tree to prune (refused clearly)")
    return model


def _float64(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in float64 with float64-exact derived constants (U matrices, Wigner 3j)."""
    if model.r_max.dtype == torch.float64:
        return model
    fresh = build_mace_model(describe_mace_model(model) | {"dtype": "float64"}).eval()
    state = model.state_dict()
    fresh.load_state_dict(
        {
            k: v if any(p in k for p in DERIVED_STATE) else state[k].to(v.dtype)
            for k, v in fresh.state_dict().items()
        }
    )
    return fresh


def test_every_checkpoint_is_covered(shared_data):
    folder = shared_data / "models"
    found = {str(p.relative_to(folder)) for p in folder.glob("*/*.model")}
    assert found == set(CHECKPOINTS)


@pytest.mark.parametrize("variant", ["channels", "max_L", "max_ell"])
@pytest.mark.parametrize("checkpoint", CHECKPOINTS, ids=[c.split("/")[-1] for c in CHECKPOINTS])
def test_pruned_checkpoint_equals_mace_calculator_and_is_equivariant(
    shared_data, tmp_path, checkpoint, variant
):
    model = _load(shared_data, checkpoint)
    layout, clusters = read_layout(model), _clusters(shared_data, checkpoint)
    options = {
        "channels": {"channels": layout.num_channels // 2, "importance": "taylor"},
        "max_L": {"max_L": layout.max_L - 1, "importance": "random"},
        "max_ell": {"max_ell": layout.max_ell - 1, "importance": "magnitude"},
    }[variant]
    if variant == "max_L" and layout.max_L == 0:
        pytest.skip("hidden features are scalars only (max L = 0)")
    options.setdefault("channels", layout.num_channels)
    pruned, report = prune(model, calibration=clusters, **options)
    assert report.parameters_after < report.parameters_before
    assert all(r < 1e-12 for r in report.lstsq_residuals.values())
    assert pruned.r_max.dtype == model.r_max.dtype
    pruned = _float64(pruned)
    for i, atoms in enumerate(clusters):
        assert_same_in_mace_calculator(pruned, tmp_path / f"pruned{i}.model", atoms)
    assert_exactly_equivariant(pruned, clusters)


@pytest.mark.parametrize(("channels", "max_L", "max_ell"), [(32, None, None), (48, 0, 2)])
def test_gst_prunes_exactly_block_by_block(shared_data, channels, max_L, max_ell):
    model = _load(shared_data, GST)
    plan = _random_plan(model, channels=channels, seed=8, max_L=max_L, max_ell=max_ell)
    pruned, _ = apply_plan(model, plan)
    _check_block_by_block(model, pruned, plan, _clusters(shared_data, GST))
