import csv
import json
import os

import pytest

from funcgrad.bench import report, speedups
from funcgrad.bench.runner import Result

REQUIRED_FIELDS = (
    "workload", "engine", "backend", "device_kind", "shape", "dtype", "n_elements", "trace_s",
    "lower_s", "compile_s", "first_call_s", "dispatch_s", "median_s", "iqr_s", "min_s", "mean_s",
    "blocks", "calls_per_block", "bytes", "gbps", "pct_of_bandwidth", "max_rel_err", "ok",
    "noisy", "error",
)


def _result(engine="jit", shape=(3, 4), median=8.8e-6, **kw):
  base = dict(workload="muladd_sum", engine=engine, backend="cpu", device="cpu:0",
              device_kind="cpu", shape=list(shape), dtype="float32", n_elements=12,
              first_call_s=0.035, median_s=median, iqr_s=2e-7, min_s=8e-6, mean_s=9e-6,
              std_s=1e-7, blocks=20, calls_per_block=1000, bytes=292, gbps=0.03,
              bandwidth_gbps=30.0, pct_of_bandwidth=0.1, max_rel_err=1e-8, tolerance=1e-5,
              ok=True, noisy=False, status="ok", block_times_s=[median] * 20)
  base.update(kw)
  return Result(**base)


@pytest.mark.parametrize("seconds, text", [
    (8.8e-6, "8.8 us"), (1.234e-3, "1.23 ms"), (2.5, "2.5 s"), (119.4e-6, "119 us"),
    (999.9e-6, "1000 us"), (3e-9, "3 ns"), (None, "-")])
def test_format_seconds(seconds, text):
  assert report.format_seconds(seconds) == text


def test_json_has_machine_and_every_required_field(tmp_path):
  path = tmp_path / "out" / "r.json"
  report.write_json(str(path), {"python": "3.11"}, [_result(), _result("numpy", error=None)])
  doc = json.loads(path.read_text())
  assert doc["machine"] == {"python": "3.11"}
  assert len(doc["results"]) == 2
  for row in doc["results"]:
    assert set(REQUIRED_FIELDS) <= set(row)
  assert doc["results"][0]["error"] is None and doc["results"][0]["shape"] == [3, 4]
  assert os.listdir(path.parent) == ["r.json"]  # no temporary file left behind


def test_csv(tmp_path):
  path = tmp_path / "r.csv"
  report.write_csv(str(path), [_result(), _result("eager", shape=(1000, 1000))])
  with path.open() as f:
    rows = list(csv.DictReader(f))
  assert [r["engine"] for r in rows] == ["jit", "eager"]
  assert rows[1]["shape"] == "1000x1000" and set(REQUIRED_FIELDS) <= set(rows[0])


def test_jsonl_appends_and_flushes(tmp_path):
  path = tmp_path / "r.jsonl"
  writer = report.JsonlWriter(str(path))
  writer.write(_result())
  assert json.loads(path.read_text())["engine"] == "jit"  # on disk before close
  writer.write(_result("numpy"))
  writer.close()
  assert [json.loads(line)["engine"] for line in path.read_text().splitlines()] == ["jit", "numpy"]


def test_compare_table():
  results = [_result("numpy", median=3.8e-6), _result("jit", trace_s=4e-3, lower_s=3e-3,
                                                      compile_s=2.5e-2, dispatch_s=5e-6),
             _result("eager", median=6.85e-4, iqr_s=1e-4, noisy=True),
             _result("torch_eager", ok=False, median=None, max_rel_err=0.5, status="wrong",
                     error="output differs from the float64 reference")]
  text = report.render_compare(results, memory="tcmalloc allocator")
  assert "[ muladd_sum on cpu (float32), tcmalloc allocator: median per call" in text
  lines = text.splitlines()
  header = next(line for line in lines if line.startswith("size"))
  assert header.split() == ["size", "numpy", "jit", "eager", "torch_eager"]
  row = next(line for line in lines if line.startswith("3x4"))
  assert "3.8 us ±0.2" in row and "685 us ±100 *" in row and "WRONG" in row
  assert "jit compile" in text and "25 ms" in text and "jit dispatch" in text
  assert "WRONG: muladd_sum 3x4 torch_eager on cpu: output differs" in text


def test_captions_name_the_allocator_and_passive_thread_pools(monkeypatch):
  monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
  assert report.process_label().endswith(" allocator")
  monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
  monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")
  assert report.process_label().endswith(" allocator, passive thread pools")
  assert "passive thread pools:" in report.render_compare([_result()])


def test_plot(tmp_path):
  pytest.importorskip("matplotlib")
  path = tmp_path / "p.png"
  report.plot(str(path), [_result(), _result(shape=(1000, 1000), median=1e-3, compile_s=0.03),
                          _result("numpy", compile_s=None)])
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _caption(results):
  return report.render_compare(results, memory="system allocator").splitlines()[0]


def test_caption_names_the_bandwidth_only_when_a_cell_shows_its_share():
  cached = [_result(cache_resident=True, pct_of_bandwidth=None),
            _result("numpy", cache_resident=True, pct_of_bandwidth=None)]
  assert _caption(cached) == ("[ muladd_sum on cpu (float32), system allocator: median per call "
                              "±IQR ]")
  shown = [*cached, _result(shape=(4000, 4000), pct_of_bandwidth=61.2, cache_resident=False)]
  assert _caption(shown).endswith("±IQR (% of 30.0 GB/s all-core copy bandwidth) ]")
  assert "(61%)" in report.render_compare(shown)


def test_caption_names_the_matmul_peak_only_for_compute_bound_cells_that_show_it():
  compute = [_result(bound="compute", pct_of_peak_flops=53.0, peak_gflops=94.0)]
  assert _caption(compute).endswith("±IQR (% of the 94 GFLOP/s float32 matmul peak) ]")
  unmeasured = [_result(bound="compute", pct_of_peak_flops=None, peak_gflops=None)]
  assert _caption(unmeasured).endswith("median per call ±IQR ]")


def test_a_share_above_100_percent_is_marked_as_a_disturbed_peak():
  rows = [_result(bound="compute", pct_of_peak_flops=157.0, peak_gflops=94.0),
          _result("numpy", bound="compute", pct_of_peak_flops=77.0, peak_gflops=94.0)]
  text = report.render_compare(rows)
  assert "(157% !)" in text and "(77%)" in text
  assert "!: above 100% of the peak: the peak was measured while something else ran" in text
  assert report.above_peak(rows[0]) and not report.above_peak(rows[1])
  assert "!: above" not in report.render_compare(rows[1:])


@pytest.mark.parametrize("calls, label", [(None, "never"), (1, "1 call"), (2, "2 calls"),
                                          (836, "836 calls")])
def test_the_break_even_column_says_never_or_how_many_calls(calls, label):
  found = speedups.Speedup("cpu", "muladd_sum", [3, 4], "eager", "jit", 2.0, 1.5, 2.5, 10, calls)
  assert report.break_even_label(found) == label
  text = report.render_speedups([found], memory="system allocator")
  cold = "never" if calls is None else str(calls)
  assert f"2x [1.5x, 2.5x] ({cold}/never calls)" in text  # never blank
