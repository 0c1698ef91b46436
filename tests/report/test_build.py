"""``build_report``: speed-up tables, failures, accuracy tables and valid PNG figures."""

from __future__ import annotations

import json
import struct
import sys

import matplotlib
import pytest

from macelerate.report import build_report
from macelerate.report.analysis import group_bench
from macelerate.report.loading import load_results
from tests.report import bench_payload, bench_row, eval_payload, realistic_results, write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, *, width=1050, height=750):
    """A real PNG of 7 x 5 inches at 150 dpi with more than a blank canvas in it."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    assert data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (width, height)


def _table_line(markdown: str, *cells: object) -> str:
    prefix = "| " + " | ".join(str(c) for c in cells) + " |"
    (line,) = [line for line in markdown.splitlines() if line.startswith(prefix)]
    return line


def test_speedups_are_reference_time_over_own_time(tmp_path):
    rows = [
        bench_row("m", "mace-torch", "exact", 100, 13.7, memory_mb=512.0),
        bench_row("m", "macelerate", "exact", 100, 4.1, memory_mb=256.0),
        bench_row("m", "macelerate", "fp32", 100, 2.3),
        bench_row("m", "mace-torch", "exact", 400, None, status="oom"),
        bench_row("m", "macelerate", "exact", 400, 11.0),
        bench_row("solo", "macelerate", "exact", 100, 3.0),
    ]
    path = write(tmp_path / "bench.json", bench_payload(rows))
    (group,) = group_bench(load_results([path]).bench)
    speedups = {
        (t.row.model_label, t.row.lever, t.row.engine, t.row.n_atoms): t for t in group.rows
    }
    assert speedups["m", "exact", "macelerate", 100].speedup == pytest.approx(13.7 / 4.1)
    assert speedups["m", "fp32", "macelerate", 100].speedup == pytest.approx(13.7 / 2.3)
    assert speedups["m", "exact", "mace-torch", 100].speedup == pytest.approx(1.0)
    assert speedups["m", "exact", "macelerate", 400].reference_status == "oom"
    assert speedups["solo", "exact", "macelerate", 100].reference_status is None

    result = build_report([path], out_dir=tmp_path / "out")
    text = result.markdown_path.read_text()
    line = _table_line(text, "m", "exact", "macelerate", "graphene_oxide:100", 100)
    assert f"| {13.7 / 4.1:.2f}× |" in line and f"| {1000 / 4.1:.2f} |" in line
    assert "| 256.0 |" in line
    line = _table_line(text, "m", "fp32", "macelerate", "graphene_oxide:100", 100)
    assert f"| {13.7 / 2.3:.2f}× |" in line
    assert "| reference |" in _table_line(text, "m", "exact", "mace-torch", "graphene_oxide:100")
    assert "| mace-torch OOM |" in _table_line(
        text, "m", "exact", "macelerate", "graphene_oxide:400"
    )
    assert "| - |" in _table_line(text, "solo", "exact", "macelerate")


def test_realistic_report(tmp_path):
    paths = realistic_results(tmp_path)
    result = build_report(paths, out_dir=tmp_path / "out")
    names = [p.name for p in result.plot_paths]
    assert names == ["time_vs_atoms.png", "memory_vs_atoms.png", "pareto.png"]
    for path in result.plot_paths:
        _assert_png(path)
    text = result.markdown_path.read_text()
    rows = json.loads(paths[0].read_text())["results"]
    reference = {
        (r["model_label"], r["n_atoms"]): r["ms_per_step"]["median"]
        for r in rows
        if r["engine"] == "mace-torch" and r["status"] == "ok"
    }
    checked = 0
    for r in rows:
        key = (r["model_label"], r["n_atoms"])
        if r["engine"] == "macelerate" and key in reference:
            line = _table_line(text, r["model_label"], r["lever"], "macelerate", r["system"])
            assert f"| {reference[key] / r['ms_per_step']['median']:.2f}× |" in line
            checked += 1
    assert checked == 16
    failures = text.split("## Failed runs")[1].split("## Accuracy")[0]
    assert "2 bench run(s) did not finish" in failures
    assert (
        "| go-mace | exact | mace-torch | graphene_oxide:24576 | 24576 | OOM | CUDA out of memory |"
        in failures
    )
    error_row = "| gst-mace | exact | mace-torch | graphene_oxide:24576 | 24576 | error |"
    assert f"{error_row} RuntimeError: boom |" in failures
    accuracy = _table_line(text, "go-mace", "fp32", "float64", "`/data/go_test.xyz`", "data labels")
    assert f"| {0.8 * 45.4:.2f} | 45.40 |" in accuracy
    assert "| C | O |" in text and "| 38.25 | 61.50 |" in text  # per-element, in Z order
    assert "Speed at 24576 atoms (the largest size all points share)" in text
    for name in names:
        assert f"]({name})" in text
    assert "1 bench file(s), 5 eval file(s)" in text and "NVIDIA H100 80GB HBM3" in text
    assert "mace-torch 0.3.16" in text and "`macelerate bench /models/go-mace.model" in text


def test_without_eval_files_no_pareto_and_the_reason(tmp_path):
    rows = [bench_row("m", "macelerate", "x", n, n / 10, memory_mb=n / 2) for n in (8, 64)]
    path = write(tmp_path / "b.json", bench_payload(rows))
    out = tmp_path / "out"
    out.mkdir()
    (out / "pareto.png").write_bytes(b"stale")
    result = build_report([path], out_dir=out)
    assert [p.name for p in result.plot_paths] == ["time_vs_atoms.png", "memory_vs_atoms.png"]
    assert not (out / "pareto.png").exists()
    text = result.markdown_path.read_text()
    assert "No `pareto.png`: no eval files were given." in text
    assert "None: every bench run finished." in text


def test_eval_only_report_has_accuracy_and_no_speed_figures(tmp_path):
    path = write(tmp_path / "e.json", eval_payload("m", "exact", 40.0))
    result = build_report([path], out_dir=tmp_path / "out")
    assert result.plot_paths == ()
    text = result.markdown_path.read_text()
    assert (
        "No bench files given." in text and "`time_vs_atoms.png` not drawn: no bench rows" in text
    )
    assert "| m | exact | float64 |" in text and "no (model_label, lever) has both" in text


def test_plotting_leaves_matplotlib_global_state_alone(tmp_path):
    backend, params = matplotlib.get_backend(), dict(matplotlib.rcParams)
    had_pyplot = "matplotlib.pyplot" in sys.modules
    build_report(realistic_results(tmp_path), out_dir=tmp_path / "out")
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == params
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


def test_every_reference_engine_gets_a_speedup_column(tmp_path):
    rows = [
        bench_row("m", "mace-torch", "exact", 100, 12.0, memory_mb=400.0),
        bench_row("m", "symmetrix", "exact", 100, 6.0, memory_mb=300.0),
        bench_row("m", "macelerate", "exact", 100, 3.0, memory_mb=200.0),
        bench_row("m", "symmetrix", "exact", 400, None, status="oom"),
        bench_row("m", "macelerate", "exact", 400, 9.0, memory_mb=500.0),
    ]
    path = write(tmp_path / "bench.json", bench_payload(rows))
    (group,) = group_bench(load_results([path]).bench)
    assert group.references == ("mace-torch", "symmetrix")
    fast = next(t for t in group.rows if t.row.engine == "macelerate" and t.row.n_atoms == 100)
    assert [(s.engine, s.ratio) for s in fast.speedups] == [("mace-torch", 4.0), ("symmetrix", 2.0)]
    assert fast.speedup == 4.0  # the first reference engine present
    result = build_report([path], out_dir=tmp_path / "out")
    text = result.markdown_path.read_text()
    assert "| speed-up vs mace-torch | speed-up vs symmetrix |" in text

    def line(engine, n_atoms):
        return _table_line(text, "m", "exact", engine, f"graphene_oxide:{n_atoms}")

    assert "| 4.00× | 2.00× |" in line("macelerate", 100)
    assert "| 2.00× | reference |" in line("symmetrix", 100)
    assert "| - | symmetrix OOM |" in line("macelerate", 400)
    for plot in result.plot_paths[:2]:
        _assert_png(plot)
