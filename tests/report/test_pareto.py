"""The accuracy-versus-speed selection: non-dominated points, the size speeds are taken at."""

from __future__ import annotations

import numpy as np
import pytest

from macelerate.report.analysis import ReportOptionError, group_bench, pareto_front, select_pareto
from macelerate.report.loading import load_results
from tests.report import SIZES, bench_payload, bench_row, eval_payload, realistic_results, write


def test_pareto_front_on_a_hand_made_set():
    speeds = [1.0, 2.0, 2.0, 3.0, 1.5, 3.0, 0.5]
    errors = [10.0, 12.0, 15.0, 20.0, 13.0, 20.0, 30.0]
    # 2 loses to 1 (same speed, worse error), 4 to 1 (slower and worse), 6 to all;
    # 3 and 5 are identical, so neither dominates the other.
    assert pareto_front(speeds, errors) == (0, 1, 3, 5)
    assert pareto_front([], []) == ()
    assert pareto_front([5.0], [1.0]) == (0,)


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def test_pareto_front_splits_random_points_by_the_definition():
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.integers(1, 8, size=(40, 2)).astype(float)]
    front = set(pareto_front([p[0] for p in points], [p[1] for p in points]))
    for i, p in enumerate(points):
        beaten = any(_dominates(q, p) for q in points)
        assert beaten == (i not in front)


def _selection(tmp_path, **options):
    loaded = load_results(realistic_results(tmp_path))
    return select_pareto(group_bench(loaded.bench), loaded.evals, **options)


def test_default_size_is_the_largest_shared_one(tmp_path):
    selection = _selection(tmp_path)
    assert selection.n_atoms == SIZES[-1] and "largest size all points share" in selection.how
    by_key = {(p.model_label, p.lever): p for p in selection.points}
    assert set(by_key) == {("go-mace", "exact"), ("go-mace", "fp32")} | {
        ("go-mace", "pruned-64"),
        ("gst-mace", "exact"),
    }
    # mace-torch died at this size, so every point is the macelerate engine
    assert {p.engine for p in selection.points} == {"macelerate"}
    assert by_key["go-mace", "pruned-64"].steps_per_s == pytest.approx(
        1000 / (1.5 + 0.006 * SIZES[-1])
    )
    speeds = [p.steps_per_s for p in selection.points]
    errors = [p.force_rmse for p in selection.points]
    front = set(pareto_front(speeds, errors))
    assert [p.on_front for p in selection.points] == [i in front for i in range(len(speeds))]
    assert not by_key["gst-mace", "exact"].on_front  # slower and worse than go-mace fp32
    assert any("go-mace/distilled-32: no bench run" in note for note in selection.notes)


def test_explicit_size_prefers_macelerate_over_the_reference(tmp_path):
    selection = _selection(tmp_path, n_atoms=SIZES[1])
    exact = next(p for p in selection.points if (p.model_label, p.lever) == ("go-mace", "exact"))
    assert exact.engine == "macelerate"
    assert exact.steps_per_s == pytest.approx(1000 / (2.5 + 0.018 * SIZES[1]))
    again = tmp_path / "again"
    again.mkdir()
    with pytest.raises(ReportOptionError, match=r"--pareto-atoms 999: .*\[96, 384"):
        _selection(again, n_atoms=999)


def test_without_a_common_size_the_most_shared_one_is_used(tmp_path):
    rows = [bench_row("a", "macelerate", "exact", n, 1.0) for n in (100, 400)]
    rows += [bench_row("b", "macelerate", "exact", n, 2.0) for n in (400, 1600)]
    rows += [bench_row("c", "macelerate", "exact", 1600, 3.0)]
    paths = [write(tmp_path / "bench.json", bench_payload(rows))]
    paths += [write(tmp_path / f"eval_{m}.json", eval_payload(m, "exact", 10.0)) for m in "abc"]
    loaded = load_results(paths)
    selection = select_pareto(group_bench(loaded.bench), loaded.evals)
    assert selection.n_atoms == 1600 and "no size is common to all" in selection.how
    assert {p.model_label for p in selection.points} == {"b", "c"}
    assert selection.notes == ("a/exact: no successful bench run at 1600 atoms (has [100, 400])",)


def test_errors_against_labels_win_over_errors_against_a_model(tmp_path):
    paths = [write(tmp_path / "b.json", bench_payload([bench_row("m", "macelerate", "x", 8, 1.0)]))]
    paths.append(write(tmp_path / "e1.json", eval_payload("m", "x", 5.0, against="/teacher.model")))
    paths.append(write(tmp_path / "e2.json", eval_payload("m", "x", 30.0)))
    loaded = load_results(paths)
    (point,) = select_pareto(group_bench(loaded.bench), loaded.evals).points
    assert point.force_rmse == 30.0 and point.eval_path == paths[2]


def test_no_matching_pair_gives_a_reason(tmp_path):
    paths = [write(tmp_path / "b.json", bench_payload([bench_row("m", "macelerate", "x", 8, 1.0)]))]
    paths.append(write(tmp_path / "e.json", eval_payload("other", "x", 5.0)))
    loaded = load_results(paths)
    selection = select_pareto(group_bench(loaded.bench), loaded.evals)
    assert selection.points == ()
    assert selection.notes == (
        "no (model_label, lever) has both a successful bench run and an eval file: "
        "bench has m/x, eval has other/x",
    )
