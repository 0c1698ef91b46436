"""Atomic writes: complete files only, ordinary permissions, fsynced, no temporaries left behind."""

from __future__ import annotations

import os
import time

import pytest

from macelerate.atomic_io import DEFAULT_FILE_MODE, remove_stale_temporaries, write_atomically


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


def test_stale_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "out.txt"
    stale = tmp_path / ".out.txt.k1ll3d_0.tmp"  # what a killed write of out.txt leaves
    stale.write_text("half")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    newer = tmp_path / ".out.txt.runn1ng_.tmp"  # a write that began after this one
    newer.write_text("in progress")
    os.utime(newer, (time.time() + 60, time.time() + 60))
    foreign = [".other.txt.abcdefgh.tmp", ".out.txt.tmp", "out.txt.abcdefgh.tmp", ".out.txt.x.tmp"]
    for name in foreign:
        (tmp_path / name).write_text("not ours")
        os.utime(tmp_path / name, (0, 0))
    write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    assert not stale.exists()
    assert newer.exists() and all((tmp_path / name).exists() for name in foreign)


def test_a_failed_write_leaves_old_temporaries_for_the_next_good_one(tmp_path):
    stale = tmp_path / ".out.txt.abcdefgh.tmp"
    stale.write_text("half")
    os.utime(stale, (0, 0))
    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out.txt", lambda tmp: (_ for _ in ()).throw(RuntimeError()))
    assert stale.exists()
    assert remove_stale_temporaries(tmp_path / "out.txt", older_than=time.time()) == [stale]


def test_the_file_and_its_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", None))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomically(tmp_path / "out.txt", lambda tmp: tmp.write_text("x"))
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]
