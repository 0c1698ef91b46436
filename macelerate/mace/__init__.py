"""Everything macelerate knows about mace-torch: its contract, its configs and its module layout.

* :mod:`~macelerate.mace.contract`: the mace-torch / e3nn attributes, signatures and behaviours
  macelerate relies on, the class names it dispatches on, and the supported versions;
  :mod:`~macelerate.mace.surface` checks models against it.
* :mod:`~macelerate.mace.config`: a model described as plain data (constructor arguments) and
  rebuilt from it.
* :mod:`~macelerate.mace.layout` and :mod:`~macelerate.mace.irreps`: the channel spaces and
  weight records of a model, read in one walk.

Names are imported on first use (mace-torch itself only when a model is built or read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.mace.config import (
        build_mace_model,
        describe_mace_model,
        rebuild_mace_model,
        scale_shift_mace_config,
    )
    from macelerate.mace.contract import MaceVersionError, check_mace_version
    from macelerate.mace.irreps import irreps_entries, irreps_string
    from macelerate.mace.layout import MaceLayout, check_supported, read_layout
    from macelerate.mace.surface import member_problems, signature_problems

_EXPORTS = {
    "MaceVersionError": "macelerate.mace.contract",
    "check_mace_version": "macelerate.mace.contract",
    "member_problems": "macelerate.mace.surface",
    "signature_problems": "macelerate.mace.surface",
    "build_mace_model": "macelerate.mace.config",
    "describe_mace_model": "macelerate.mace.config",
    "rebuild_mace_model": "macelerate.mace.config",
    "scale_shift_mace_config": "macelerate.mace.config",
    "MaceLayout": "macelerate.mace.layout",
    "check_supported": "macelerate.mace.layout",
    "read_layout": "macelerate.mace.layout",
    "irreps_entries": "macelerate.mace.irreps",
    "irreps_string": "macelerate.mace.irreps",
}

__all__ = [
    "MaceLayout",
    "MaceVersionError",
    "build_mace_model",
    "check_mace_version",
    "check_supported",
    "describe_mace_model",
    "irreps_entries",
    "irreps_string",
    "member_problems",
    "read_layout",
    "rebuild_mace_model",
    "scale_shift_mace_config",
    "signature_problems",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
