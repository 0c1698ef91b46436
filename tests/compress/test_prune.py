"""Block surgery of tiny MACE models: exact against a zeroed reference, module by module."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from macelerate._mace import quiet_model_construction
from macelerate.compress import (
    PrunePlan,
    apply_plan,
    block_importance,
    channel_spaces,
    plan_pruning,
    prune,
    uniform_plan,
)
from macelerate.compress.irreps_slicing import feature_index, select_by_ir, select_tp_outputs
from macelerate.data.labels import LabelKeys
from macelerate.errors import ModelFileError
from macelerate.graph.batch import build_graph
from macelerate.mace.irreps import irreps_entries, paths_from_e3nn
from macelerate.mace.layout import check_supported, selects_message
from macelerate.testing import rotation_matrix, tiny_mace, tiny_mace_config

Z = [1, 6, 8]


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    """8 channels, hidden L <= 1, edge ell <= 2, correlation 2."""
    return tiny_mace(Z, seed=3)


@pytest.fixture(scope="module")
def wide() -> torch.nn.Module:
    """8 channels, hidden L <= 2, edge ell <= 3, correlation 2."""
    return tiny_mace(Z, seed=4, max_L=2, max_ell=3)


def _structures() -> list[Atoms]:
    a = molecule("CH3CH2OH")
    a.rattle(0.1, seed=1)
    b = molecule("CH3COOH")
    b.rattle(0.1, seed=2)
    b.set_cell(np.eye(3) * 7.0)
    b.pbc = True
    return [a, b]


def _evaluate(model, atoms, rotation: np.ndarray | None = None):
    """(energy [G], forces [N, 3]) of ``model`` in float64."""
    atoms = [a.copy() for a in (atoms if isinstance(atoms, list) else [atoms])]
    for a in atoms if rotation is not None else []:
        a.positions = a.positions @ rotation.T
        a.cell = a.cell.array @ rotation.T
    z_table = [int(z) for z in model.atomic_numbers]
    graph = build_graph(atoms, cutoff=float(model.r_max), z_table=z_table, dtype=torch.float64)
    data = dict(graph)
    data["positions"] = graph["positions"].clone()
    out = model(data, training=False, compute_force=True)
    return out["energy"].detach(), out["forces"].detach()


def _random_plan(model, *, channels: int, seed: int, max_L=None, max_ell=None) -> PrunePlan:
    """A different random kept set in every channel space."""
    rng = np.random.default_rng(seed)
    plan = uniform_plan(model, range(channels), max_L=max_L, max_ell=max_ell)
    kept = tuple(
        (space, tuple(sorted(rng.permutation(irreps[0][0])[:channels].tolist())))
        for space, irreps in channel_spaces(model).items()
    )
    return PrunePlan(channels, kept, plan.max_L, plan.max_ell)


def _views(module, weight=None):
    return [(ins, view) for _, ins, view in module.weight_views(weight, yield_instruction=True)]


def _zero_writers(module, plan: PrunePlan, space: str, max_l: int | None = None) -> None:
    """Zero the output channels of ``space`` the plan removes (and outputs above ``max_l``)."""
    removed = [c for c in range(module.irreps_out[0].mul) if c not in plan.kept_channels(space)]
    for ins, view in _views(module):
        view[..., removed] = 0.0
        if max_l is not None and module.irreps_out[ins.i_out].ir.l > max_l:
            view.zero_()


def _writes(model, t: int) -> dict[str, str]:
    """Channel space ``interactions[t].linear`` / ``.skip_tp`` write (skip_tp after the message
    in a non-residual RealAgnosticInteractionBlock, into the next layer in a residual one)."""
    if selects_message(model.interactions[t]):
        return {"linear": f"selector.{t}", "skip_tp": f"message.{t}"}
    return {"linear": f"message.{t}", "skip_tp": f"node.{t + 1}"}


def _zeroed_reference(model, plan: PrunePlan) -> torch.nn.Module:
    """The original with every weight WRITING a removed block set to zero (e3nn weight views)."""
    with quiet_model_construction():
        ref = copy.deepcopy(model)
    last = len(ref.interactions) - 1
    with torch.no_grad():
        _zero_writers(ref.node_embedding.linear, plan, "node.0")
        for t, (block, product) in enumerate(zip(ref.interactions, ref.products)):
            writes = _writes(ref, t)
            _zero_writers(block.linear_up, plan, f"edge.{t}")
            _zero_writers(block.linear, plan, writes["linear"], plan.max_ell)
            max_l = plan.max_L if t < last else None
            skip_max = plan.max_ell if selects_message(block) else max_l
            _zero_writers(block.skip_tp, plan, writes["skip_tp"], skip_max)
            _zero_writers(product.linear, plan, f"node.{t + 1}", max_l)
            for ins, view in _views(block.conv_tp, block.conv_tp_weights[-1].weight):
                if block.conv_tp.irreps_in2[ins.i_in2].ir.l > plan.max_ell:
                    view.zero_()  # radial weights of paths on removed edge-attribute orders
    return ref


def _kept_index(old_module, new_module, kept, attr="irreps_out"):
    old, new = irreps_entries(getattr(old_module, attr)), irreps_entries(getattr(new_module, attr))
    return feature_index(old, select_by_ir(old, new, kept))


def _module_outputs(model, atoms) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach())
        )
        for name, module in model.named_modules()
        if name.count(".") <= 2
        and name.split(".")[-1]
        in ("linear", "linear_up", "conv_tp", "skip_tp", "symmetric_contractions", "linear_1")
    ]
    try:
        _evaluate(model, atoms)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def _conv_index(old, new, plan, t):
    tp_o, tp_n = old.interactions[t].conv_tp, new.interactions[t].conv_tp
    e = lambda m, a: irreps_entries(getattr(m, a))  # noqa: E731
    sel1 = select_by_ir(
        e(tp_o, "irreps_in1"), e(tp_n, "irreps_in1"), plan.kept_channels(f"edge.{t}")
    )
    sel2 = select_by_ir(e(tp_o, "irreps_in2"), e(tp_n, "irreps_in2"))
    mid = select_tp_outputs(
        paths_from_e3nn(tp_o),
        paths_from_e3nn(tp_n),
        e(tp_o, "irreps_out"),
        e(tp_n, "irreps_out"),
        [sel1, sel2],
    )
    return feature_index(e(tp_o, "irreps_out"), mid)


def _check_block_by_block(model, pruned, plan, atoms: list[Atoms] | None = None) -> None:
    """Every module of the pruned model outputs the zeroed reference's kept components, and the
    zeroed writers' removed components are exactly zero. (The edge tensor product and the
    symmetric contraction still compute removed orders in the reference; nothing reads them.)
    ``atoms``: the structures (default: :func:`_structures`)."""
    ref = _zeroed_reference(model, plan)
    atoms = _structures() if atoms is None else atoms
    got, want = _module_outputs(pruned, atoms), _module_outputs(ref, atoms)
    assert set(got) == set(want) and len(got) >= 12
    for name, value in want.items():
        parts = name.split(".")
        old_m, new_m = model.get_submodule(name), pruned.get_submodule(name)
        t = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        writes = _writes(model, t)
        space = {
            "node_embedding.linear": "node.0",
            f"interactions.{t}.linear_up": f"edge.{t}",
            f"interactions.{t}.linear": writes["linear"],
            f"interactions.{t}.skip_tp": writes["skip_tp"],
            f"products.{t}.symmetric_contractions": f"message.{t}",
            f"products.{t}.linear": f"node.{t + 1}",
        }.get(name)
        if name.endswith("conv_tp"):
            index = _conv_index(model, pruned, plan, t)
        elif space is None:  # readout MLP hidden layer: unpruned outputs
            index = torch.arange(value.shape[-1])
        else:
            index = _kept_index(old_m, new_m, plan.kept_channels(space))
        torch.testing.assert_close(got[name], value[..., index], rtol=0, atol=1e-10, msg=name)
        if space is not None and not name.endswith("symmetric_contractions"):  # zeroed writers
            removed = torch.ones(value.shape[-1], dtype=torch.bool)
            removed[index] = False
            assert not value[..., removed].any(), name
    for (e1, f1), (e2, f2) in [(_evaluate(pruned, atoms), _evaluate(ref, atoms))]:
        torch.testing.assert_close(e1, e2, rtol=0, atol=1e-10)
        torch.testing.assert_close(f1, f2, rtol=0, atol=1e-10)


def assert_exactly_equivariant(pruned: torch.nn.Module, atoms: list[Atoms] | None = None) -> None:
    """Energies invariant and forces equivariant under a random rotation, to 1e-11 (float64),
    on ``atoms`` (default: :func:`_structures`)."""
    rotation = rotation_matrix(np.random.default_rng(0))
    atoms = _structures() if atoms is None else atoms
    (e0, f0), (e1, f1) = _evaluate(pruned, atoms), _evaluate(pruned, atoms, rotation)
    assert float((e1 - e0).abs().max()) < 1e-11
    assert float((f1 - f0 @ torch.as_tensor(rotation).T).abs().max()) < 1e-11


def assert_same_in_mace_calculator(pruned: torch.nn.Module, path, atoms) -> None:
    """``pruned`` saved as a mace .model gives the same E and F in mace's own calculator."""
    from mace.calculators import MACECalculator

    torch.save(pruned, path)
    with quiet_model_construction():
        calc = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")
    atoms.calc = calc
    energy, forces = _evaluate(pruned, atoms)
    assert abs(atoms.get_potential_energy() - float(energy[0])) < 1e-9
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-9)


def test_identity_plan_reproduces_the_model(small):
    pruned, report = apply_plan(small, uniform_plan(small, range(8)))
    (e0, f0), (e1, f1) = _evaluate(small, _structures()), _evaluate(pruned, _structures())
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-10)
    torch.testing.assert_close(f1, f0, rtol=0, atol=1e-10)
    assert report.parameters_after == report.parameters_before and report.removed == ()
    for (name, a), b in zip(small.state_dict().items(), pruned.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_identity_plan_correlation_3():
    model = tiny_mace(Z, seed=5, correlation=3)
    pruned, _ = apply_plan(model, uniform_plan(model, range(8)))
    (e0, f0), (e1, f1) = _evaluate(model, _structures()), _evaluate(pruned, _structures())
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-10)
    torch.testing.assert_close(f1, f0, rtol=0, atol=1e-10)


def test_channel_pruning_equals_zeroed_reference_block_by_block(small):
    plan = _random_plan(small, channels=5, seed=0)
    pruned, report = apply_plan(small, plan)
    assert report.parameters_after < report.parameters_before
    _check_block_by_block(small, pruned, plan)


@pytest.mark.parametrize(("max_L", "max_ell"), [(1, 2), (2, 1), (0, 3)])
def test_degree_pruning_equals_zeroed_reference(wide, max_L, max_ell):
    plan = _random_plan(wide, channels=6, seed=1, max_L=max_L, max_ell=max_ell)
    pruned, report = apply_plan(wide, plan)
    assert all(r < 1e-12 for r in report.lstsq_residuals.values())
    assert bool(report.lstsq_residuals) == (max_ell < 3)
    assert report.macs_per_atom_after < report.macs_per_atom_before
    _check_block_by_block(wide, pruned, plan)


def test_pruned_model_is_exactly_equivariant(wide):
    pruned, _ = apply_plan(wide, _random_plan(wide, channels=4, seed=2, max_L=1, max_ell=2))
    assert_exactly_equivariant(pruned)


def test_pruned_model_is_a_plain_mace_model_for_mace_calculator(small, tmp_path):
    from mace.modules import ScaleShiftMACE

    pruned, _ = apply_plan(small, _random_plan(small, channels=3, seed=3, max_ell=1))
    assert type(pruned) is ScaleShiftMACE
    assert_same_in_mace_calculator(pruned, tmp_path / "pruned.model", _structures()[0])


def test_inputs_are_not_mutated_and_potentials_are_accepted(small):
    import macelerate

    before = {k: v.clone() for k, v in small.state_dict().items()}
    potential = macelerate.load(small)
    plan = _random_plan(small, channels=4, seed=4, max_ell=1)
    from_module, _ = apply_plan(small, plan)
    from_potential, _ = apply_plan(potential, plan)
    for key, value in small.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in small.parameters() if type(p).__name__ != "EmptyParam")
    torch.testing.assert_close(
        _evaluate(from_potential, _structures()), _evaluate(from_module, _structures())
    )


@pytest.mark.parametrize("method", ["magnitude", "random", "taylor"])
def test_prune_end_to_end_report(small, method):
    frames = _structures()
    for i, atoms in enumerate(frames):
        atoms.info["ref_energy"] = -10.0 - i
        atoms.arrays["ref_forces"] = np.zeros((len(atoms), 3))
    keys = LabelKeys(energy="ref_energy", forces="ref_forces")
    model, report = prune(
        small, channels=4, max_ell=1, importance=method, calibration=frames, label_keys=keys
    )
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["parameters_after"] < payload["parameters_before"]
    assert payload["macs_per_edge_after"] < payload["macs_per_edge_before"]
    assert report.importance.startswith(method) and ("labels" in report.importance) == (
        method == "taylor"
    )
    assert all(len(kept) == 4 for kept in payload["plan"]["kept"].values())
    assert "edge ell=2" in report.removed and len(report.removed) == 7 * 4 + 1
    assert torch.isfinite(_evaluate(model, frames)[1]).all()


def test_plan_pruning_picks_top_scores(small):
    scores = block_importance(small, method="random", seed=7)
    plan = plan_pruning(scores, channels=3, max_L=0)
    for space, kept in plan.kept:
        values = scores.channel_scores[space]
        assert kept == tuple(sorted(np.argsort(values)[::-1][:3].tolist()))
    assert "hidden L=1" in plan.removed
    with pytest.raises(ValueError, match="channels"):
        plan_pruning(scores, channels=9)
    with pytest.raises(ValueError, match="max_L"):
        plan_pruning(scores, channels=3, max_ell=3)


def test_unsupported_models_are_refused():
    config = tiny_mace_config(Z) | {"interaction_cls_first": "RealAgnosticDensityInteractionBlock"}
    with pytest.raises(ModelFileError, match="interaction_cls_first"):
        check_supported(config)
    with pytest.raises(ModelFileError, match="heads"):
        check_supported(tiny_mace_config(Z) | {"heads": ["a", "b"]})
    with pytest.raises(ValueError, match="taylor importance needs calibration"):
        prune(torch.nn.Linear(1, 1), channels=1)
