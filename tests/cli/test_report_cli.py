"""``macelerate report``: writes the report, and bad input is one error line with exit code 2."""

from __future__ import annotations

from macelerate.cli.__main__ import main
from tests.report import SIZES, bench_payload, bench_row, realistic_results, write


def test_report_writes_markdown_and_figures(tmp_path, capsys):
    paths = realistic_results(tmp_path)
    out = tmp_path / "out"
    code = main(["report", *map(str, paths), "--out", str(out), "--pareto-atoms", str(SIZES[2])])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"wrote {out / 'report.md'}"
    for name in ("time_vs_atoms.png", "memory_vs_atoms.png", "pareto.png"):
        assert f"wrote {out / name}" in printed
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Speed at {SIZES[2]} atoms (set by --pareto-atoms)" in (out / "report.md").read_text()


def test_wrong_schema_exits_2_naming_the_file(tmp_path, capsys):
    good = write(
        tmp_path / "bench.json", bench_payload([bench_row("m", "macelerate", "x", 8, 1.0)])
    )
    wrong = write(tmp_path / "other.json", {"schema": "something/9"})
    assert main(["report", str(good), str(wrong), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("macelerate report: error:")
    assert str(wrong) in err and "'something/9'" in err and "macelerate-bench/1" in err
    assert not (tmp_path / "out" / "report.md").exists()


def test_missing_schema_exits_2(tmp_path, capsys):
    bare = write(tmp_path / "bare.json", {"results": []})
    assert main(["report", str(bare), "--out", str(tmp_path / "out")]) == 2
    assert f"{bare} has no 'schema' key" in capsys.readouterr().err


def test_unmeasured_pareto_size_exits_2(tmp_path, capsys):
    paths = realistic_results(tmp_path)
    args = ["report", *map(str, paths), "--out", str(tmp_path / "out"), "--pareto-atoms", "7"]
    assert main(args) == 2
    assert "--pareto-atoms 7" in capsys.readouterr().err
