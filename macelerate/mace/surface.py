"""Check mace-torch models and functions against :mod:`macelerate.mace.contract`.

:func:`member_problems` walks models and reports every listed attribute that a module of a listed
class lacks or holds as the wrong kind; :func:`signature_problems` reports listed functions and
methods whose parameters moved. Both return plain strings (empty lists: the contract holds), so a
test, or a user checking a new mace-torch release, sees every difference at once.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from macelerate._mace import import_mace
from macelerate.mace.contract import MEMBERS, SIGNATURES, Kind, Member


def class_names(module: object) -> set[str]:
    """Qualified names (``module.Class``) of ``module``'s class and all its bases."""
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(module).__mro__}


def _expanded(member: Member, owner: Any) -> Iterator[str]:
    """The attribute names ``member.name`` stands for on ``owner``."""
    if "{nu}" in member.name:
        for nu in range(1, int(owner.correlation) + 1):
            yield member.name.format(nu=nu)
    elif "{i}" in member.name:
        for i in range(len(owner.hs) - 1):
            yield member.name.format(i=i)
    else:
        yield member.name


_TYPES: dict[str, type] = {
    "module": torch.nn.Module,
    "modules": torch.nn.ModuleList,
    "tensor": torch.Tensor,
    "parameter": torch.nn.Parameter,
    "parameters": torch.nn.ParameterList,
    "bool": bool,
}


def _is_kind(value: Any, kind: Kind, fields: tuple[str, ...]) -> bool:
    """Whether ``value`` is what a member of ``kind`` must hold (see ``contract.Kind``)."""
    if kind in _TYPES:
        return isinstance(value, _TYPES[kind])
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "irreps":
        return type(value).__name__ == "Irreps"
    items = value if isinstance(value, list | tuple) else None
    if kind == "ints":
        return items is not None and all(isinstance(v, int) for v in items)
    if kind == "strings":
        return items is not None and all(isinstance(v, str) for v in items)
    if kind == "records":
        return bool(items) and all(hasattr(r, name) for r in items or () for name in fields)
    return kind == "present"


def member_problems(*models: torch.nn.Module) -> list[str]:
    """Every :data:`~macelerate.mace.contract.MEMBERS` entry the modules of ``models`` break.

    Each listed owner class must occur in at least one model; every instance must have each of
    its listed attributes (optional ones: where present), of the listed kind.
    """
    modules = [module for model in models for module in model.modules()]
    problems = []
    for member in MEMBERS:
        owners = [m for m in modules if class_names(m) & set(member.owners)]
        if member.optional:
            owners = [m for m in owners if hasattr(m, member.name)]
        if not owners:
            what = f"with {member.name} " if member.optional else ""
            problems.append(f"no {' or '.join(member.owners)} {what}in the models checked")
        for owner in owners:
            for name in _expanded(member, owner):
                where = f"{type(owner).__name__}.{name}"
                if not hasattr(owner, name):
                    problems.append(f"{where} is missing ({member.use})")
                elif not _is_kind(getattr(owner, name), member.kind, member.fields):
                    value = type(getattr(owner, name)).__name__
                    problems.append(f"{where} is a {value}, not {member.kind} ({member.use})")
    return sorted(set(problems))


def _resolve(qualified: str) -> Any:
    """The object a dotted name names: a module attribute, or a class's attribute."""
    parts = qualified.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(f"cannot import {qualified}")


def signature_problems() -> list[str]:
    """Every :data:`~macelerate.mace.contract.SIGNATURES` entry that no longer holds: a function,
    class or method that is gone, or whose parameters lack the listed ones in that order."""
    import_mace()
    problems = []
    for signature in SIGNATURES:
        name = signature.owner + (f".{signature.method}" if signature.method else "")
        try:
            target = _resolve(name)
        except (ImportError, AttributeError) as error:
            problems.append(f"{name} is gone ({error})")
            continue
        parameters = list(inspect.signature(target).parameters)
        found = [p for p in parameters if p in signature.parameters]
        if found != list(signature.parameters):
            problems.append(
                f"{name}{inspect.signature(target)} lacks parameters "
                f"{list(signature.parameters)} in this order ({signature.use})"
            )
    return problems
