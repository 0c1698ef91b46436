"""ASE's index syntax for data files: ``FILE@5``, ``FILE@-1``, ``FILE@:20``, ``FILE@10:40:2``.

:func:`parse_data_path` splits the file from its index the way ``ase.io.read`` does (at the last
``@`` of the file name, unless a file with the whole name exists); :func:`select` reads the
selection with range checks ASE does not make (it stops with ``StopIteration`` past the end, and
wraps some negative indices around).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ase import Atoms

from macelerate.errors import DataFileError

_INTEGER = re.compile(r"-?\d+")
_SLICE = re.compile(r"(-?\d+)?:(-?\d+)?(:(-?\d+)?)?")
SYNTAX = "FILE@N (one structure; -1 is the last), FILE@START:STOP[:STEP] or FILE@: (all)"


def parse_data_path(path: str | Path) -> tuple[Path, str | None]:
    """``(file, index)`` of ``FILE@INDEX``; ``index`` is ``None`` when ``path`` carries none.

    Raises:
        DataFileError: a malformed index.
    """
    text = str(path)
    name = Path(text).name
    if "@" not in name or Path(text).is_file():
        return Path(text), None
    cut = text.rfind("@")
    file, index = Path(text[:cut]), text[cut + 1 :]
    check_index(index, source=text)
    return file, index


def check_index(index: str, *, source: str) -> None:
    """Raise :class:`DataFileError` unless ``index`` is an integer or a slice with step != 0."""
    match = _SLICE.fullmatch(index)
    if _INTEGER.fullmatch(index) or (match and match.group(4) not in ("0", "-0")):
        return
    raise DataFileError(f"bad structure index '{index}' in {source}; use {SYNTAX}")


def select(file: Path, index: str, *, read: Callable[[Path, str], list[Atoms]]) -> list[Atoms]:
    """The structures of ``file`` at ``index``, read with ``read(file, ase_index)``.

    Raises:
        DataFileError: a malformed index, an integer index past either end, or an empty
            selection.
    """
    check_index(index, source=f"{file}@{index}")
    if _INTEGER.fullmatch(index):
        position = int(index)
        if position >= 0:
            try:
                return read(file, index)
            except (StopIteration, IndexError):
                pass  # past the end: count below for the message
        structures = read(file, ":")
        if -len(structures) <= position < len(structures):
            return [structures[position]]
        raise DataFileError(
            f"structure index {position} is out of range for {file}, which holds "
            f"{len(structures)} structures (valid: {-len(structures)} to {len(structures) - 1})"
        )
    structures = read(file, index)
    if not structures:
        where = "" if index == ":" else f" at index '{index}'"
        raise DataFileError(f"{file} holds no structures{where}; check the file and the index")
    return structures
