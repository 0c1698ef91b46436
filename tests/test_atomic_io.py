"""Atomic writes: complete files only, ordinary permissions, no temporary files left behind."""

from __future__ import annotations

import pytest

from macelerate.atomic_io import DEFAULT_FILE_MODE, write_atomically


def test_write_replaces_in_one_step_with_ordinary_mode(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_atomically(target, lambda tmp: tmp.write_text("first"))
    assert target.read_text() == "first"
    assert target.stat().st_mode & 0o777 == DEFAULT_FILE_MODE
    write_atomically(target, lambda tmp: tmp.write_text("second"))
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
