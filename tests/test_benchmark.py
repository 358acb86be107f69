"""Benchmark targets, report writer and CLI parsing."""

import json

import pytest

from funcgrad.bench import headline, targets
from funcgrad.bench.headline import (
  large_targets,
  small_targets,
  timer_overhead_target,
)
from funcgrad.bench.runner import Result
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error


def _row(engine, median, shape=(3, 4), ok=True, blocks=None, **kw):
  return Result(workload="muladd_sum", engine=engine, backend="cpu", device="cpu:0",
                device_kind="cpu", shape=list(shape), dtype="float32", n_elements=12,
                median_s=median, ok=ok, status="ok" if ok else "wrong", block_times_s=blocks,
                **kw)


def test_target_pass_and_miss():
  assert targets.Target("a", 90.0, 85, "%", True).passed
  assert not targets.Target("b", 80.0, 85, "%", True).passed
  assert targets.Target("c", 1.2, 1.5, "x", False).passed
  assert not targets.Target("d", 1.6, 1.5, "x", False).passed
  assert not targets.Target("e", None, 1.5, "x", False).passed
  assert targets.ratio(3.0, 2.0) == 1.5 and targets.ratio(None, 2.0) is None
  assert targets.ratio(1.0, 0.0) is None


def test_report_writer(tmp_path):
  results = [targets.Target("jit % of copy bandwidth", 91.5, 85, "%", True, "detail one"),
             targets.Target("best jit / numpy", 2.0, 1.5, "x", False, "detail two"),
             targets.Target("not measured", None, 1.0, "x", True)]
  markdown = targets.render(results)
  lines = markdown.splitlines()
  assert lines[0] == "| target | measured | goal | result | detail |"
  assert lines[2] == "| jit % of copy bandwidth | 91.5 % | >= 85 % | PASS | detail one |"
  assert lines[3] == "| best jit / numpy | 2x | <= 1.5x | MISS | detail two |"
  assert "| not measured | not measured |" in lines[4]
  doc = json.loads(targets.json_document({"python": "3.11"}, results))
  assert doc["machine"] == {"python": "3.11"}
  assert [t["pass"] for t in doc["targets"]] == [True, False, False]
  for t in doc["targets"]:
    assert {"name", "measured", "target", "unit", "pass"} <= set(t)


def test_headline_target_arithmetic():
  large = [_row("jit", 0.018, (4000, 4000), gbps=21.4, bandwidth_gbps=23.3, bytes=384_000_004,
                pct_of_bandwidth=91.8),
           _row("numpy", 0.050, (4000, 4000)), _row("torch_compile", 0.014, (4000, 4000)),
           _row("tf_xla", 0.001, (4000, 4000), ok=False)]  # a wrong row never counts
  pct, peer = large_targets(large, "4000x4000")
  assert pct.measured == 91.8 and pct.passed
  assert peer.measured == pytest.approx(0.014 / 0.018) and not peer.passed
  assert "torch_compile" in peer.detail
  small = [_row("numpy", 5e-6), _row("jit", 9e-6), _row("jit_packed", 6e-6),
           _row("torch_eager", 40e-6)]
  vs_numpy, vs_peer = small_targets(small)
  assert vs_numpy.measured == pytest.approx(1.2) and "jit_packed" in vs_numpy.detail
  assert vs_peer.measured == pytest.approx(40 / 6)
  (overhead,) = timer_overhead_target(small)
  assert 0 < overhead.measured < 100


def test_ratio_agreement_compares_speedups_of_two_runs():
  def rows(eager, numpy):
    return [_row("jit", 20e-6, blocks=[20e-6] * 4), _row("eager", eager, blocks=[eager] * 4),
            _row("numpy", numpy, blocks=[numpy] * 4)]

  from funcgrad.bench import stability

  target = stability.agreement_target([rows(2e-3, 5e-6), rows(2.2e-3, 9e-6)], "jit", None,
                                      "median")
  # eager: 100x then 110x, 10% apart; numpy's rows are under 10 us and left out.
  assert target.measured == pytest.approx(10.0) and "eager" in target.detail
  assert "over 1 speedups" in target.detail


@pytest.mark.parametrize("args, fragments", [
    (["--targets=bogus"], ["'bogus'", "large, small, adam, cache, models, harness, answers"]),
    (["--large_size=4000"], ["4000", "NxD"]),
    (["--large_size=0x4"], ["'0x4'"]),
    (["--steps=0"], ["--steps=0"]),
    (["--repeats=0"], ["--repeats=0"]),
    (["--targets=answers", "--answer_sizes=3x4,nan"], ["'nan'", "--answer_sizes"]),
    (["--targets=answers", "--answer_sizes="], ["--answer_sizes=''"]),
    (["--targets=answers", "--answer_engines=numpy,bogus"], ["'bogus'", "--answer_engines"]),
    (["--targets=answers", "--answer_engines=numpy,eager"], ["--answer_engines='numpy,eager'",
                                                            "must include jit"]),
    (["--targets=small", "--model_engines=jit,torch"], ["'torch'", "--model_engines"]),
    (["--targets=models", "--model_engines=numpy,jit"], ["--model_engines='numpy,jit'",
                                                          "must include jit and eager"]),
    (["--thread_pools=bogus"], ["--thread_pools=bogus", "spin|passive"]),
    (["--allocator=bogus"], ["--allocator=bogus", "auto|system|tcmalloc|jemalloc|mimalloc"]),
])
def test_benchmark_bad_flags(args, fragments):
  assert_one_line_error(run_in_process("experiments.benchmark", *args), *fragments)


def test_the_answers_sweep_runs_the_engines_asked_for():
  rows = headline.default_compare_rows(0.01, sizes=[(3, 4)], engine_names=("numpy", "jit"))
  assert sorted((r.workload, r.engine) for r in rows) == [
      ("abs_loss", "jit"), ("abs_loss", "numpy"), ("muladd_sum", "jit"), ("muladd_sum", "numpy")]
  assert all(r.ok for r in rows)
  assert "jit" in headline.COMPARE_ENGINES and "jit_scan" not in headline.COMPARE_ENGINES


def test_a_share_above_its_peak_is_a_disturbed_peak_never_a_pass(tmp_path):
  above = targets.Target("jit % of matmul peak, mlp 1024x2048", 157.0, 50, "%", True, "d",
                         of_peak=True)
  within = targets.Target("jit % of matmul peak, mlp 128x512", 53.0, 50, "%", True, "d",
                          of_peak=True)
  assert above.disturbed_peak and not above.passed and above.result == "DISTURBED PEAK"
  assert within.passed and within.result == "PASS"
  assert "| 157 % | >= 50 % | DISTURBED PEAK |" in targets.render([above])
  assert [(t["pass"], t["result"]) for t in json.loads(targets.json_document(
      {}, [above, within]))["targets"]] == [
      (False, "DISTURBED PEAK"), (True, "PASS")]
  assert targets.exit_status(True, [above], strict=True) == 1
  # A ratio that is not a share of a peak may exceed 100.
  assert targets.Target("warm / cold", 130.0, 150, "%", False).passed
