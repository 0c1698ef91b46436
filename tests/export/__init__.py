"""Export tests; :func:`ase_results` is shared by the metatomic test files."""


def ase_results(calculator, atoms):
    """Energy, forces and (periodic structures) stress of ``atoms`` from an ASE calculator."""
    atoms = atoms.copy()
    atoms.calc = calculator
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
    return out
