"""Export tests; :func:`ase_results` is shared by the metatomic test files."""

import warnings


def ase_results(calculator, atoms):
    """Energy, forces and (periodic structures) stress of ``atoms`` from an ASE calculator.

    metatomic-ase also takes a stress of non-periodic structures, dividing by their zero
    volume; numpy warns when that gives inf - inf. The stress of such structures is not used.
    """
    atoms = atoms.copy()
    atoms.calc = calculator
    with warnings.catch_warnings():
        if not atoms.pbc.all():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="metatomic_ase")
        out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
    return out
