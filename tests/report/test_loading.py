"""Reading bench and eval result files: valid files load, anything else is one clear error."""

from __future__ import annotations

import json

import pytest

from macelerate.errors import MacelerateError
from macelerate.report.loading import ResultFileError, load_results
from tests.report import bench_payload, bench_row, eval_payload, write


def test_bench_and_eval_files_load_in_order(tmp_path):
    rows = [
        bench_row("m", "mace-torch", "exact", 64, 8.0, memory_mb=120.0),
        bench_row("m", "mace-torch", "exact", 512, None, status="oom"),
    ]
    bench = write(tmp_path / "b.json", bench_payload(rows))
    first = write(tmp_path / "e1.json", eval_payload("m", "exact", 40.0))
    second = write(tmp_path / "e2.json", eval_payload("m", "fp32", 41.0, against="/ref.model"))
    loaded = load_results([first, bench, second])
    assert [e.path for e in loaded.evals] == [first, second]
    (bench_file,) = loaded.bench
    ok, oom = bench_file.rows
    assert (ok.ms_median, ok.ms_min, ok.ms_max) == pytest.approx((8.0, 7.2, 9.6))
    assert ok.steps_per_s == pytest.approx(125.0) and ok.peak_memory_mb == 120.0
    assert (oom.status, oom.ms_median, oom.error) == ("oom", None, "CUDA out of memory")
    assert bench_file.device_label == "cuda NVIDIA H100 80GB HBM3"
    assert bench_file.settings_label == "float64, 20 repeats, 5 warm-up"
    assert loaded.evals[1].against == "/ref.model"
    assert loaded.evals[0].per_element["O"]["force_rmse"] == 61.5


def test_steps_per_s_falls_back_to_the_median(tmp_path):
    row = bench_row("m", "macelerate", "exact", 64, 4.0) | {"steps_per_s": None}
    loaded = load_results([write(tmp_path / "b.json", bench_payload([row]))])
    assert loaded.bench[0].rows[0].steps_per_s == pytest.approx(250.0)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"results": []}, "has no 'schema' key"),
        ({"schema": "macelerate-bench/2", "results": []}, "has schema 'macelerate-bench/2'"),
        ([1, 2], "holds a JSON list"),
    ],
)
def test_foreign_files_name_the_file_and_the_schemas(tmp_path, payload, expected):
    path = write(tmp_path / "foreign.json", payload)
    with pytest.raises(ResultFileError) as caught:
        load_results([path])
    message = str(caught.value)
    assert isinstance(caught.value, MacelerateError)
    assert str(path) in message and expected in message
    assert "macelerate-bench/1" in message and "macelerate-eval/1" in message


def test_not_json_and_missing_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ResultFileError, match=r"broken\.json is not JSON"):
        load_results([broken])
    with pytest.raises(ResultFileError, match=r"cannot read .*absent\.json"):
        load_results([tmp_path / "absent.json"])


def test_bad_rows_name_the_row_and_key(tmp_path):
    row = bench_row("m", "macelerate", "exact", 64, 4.0)
    del row["n_atoms"]
    path = write(tmp_path / "b.json", bench_payload([bench_row("m", "x", "exact", 8, 1.0), row]))
    with pytest.raises(ResultFileError, match=r"b\.json results\[1\] lacks the key 'n_atoms'"):
        load_results([path])
    bad_status = bench_row("m", "macelerate", "exact", 64, 4.0) | {"status": "crashed"}
    path = write(tmp_path / "c.json", bench_payload([bad_status]))
    with pytest.raises(ResultFileError, match="status 'crashed'"):
        load_results([path])
    boolean = bench_row("m", "macelerate", "exact", 64, 4.0) | {"n_atoms": True}
    with pytest.raises(ResultFileError, match="'n_atoms' is True, not an integer"):
        load_results([write(tmp_path / "d.json", bench_payload([boolean]))])
    no_time = bench_row("m", "macelerate", "exact", 64, 4.0) | {"ms_per_step": None}
    with pytest.raises(ResultFileError, match="status 'ok' but no ms_per_step"):
        load_results([write(tmp_path / "e.json", bench_payload([no_time]))])


def test_eval_file_needs_model_label(tmp_path):
    payload = eval_payload("m", "exact", 40.0)
    del payload["model_label"]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ResultFileError, match=r"eval\.json lacks the key 'model_label'"):
        load_results([path])
