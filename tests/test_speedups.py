"""Speedups: per-round ratios, the bootstrap interval on known data, break-even arithmetic."""

import numpy as np
import pytest

from funcgrad.bench import speedups
from funcgrad.bench.runner import Result
from funcgrad.errors import UsageError


def _row(engine, blocks, first_call_s=None, shape=(3, 4)):
  return Result(workload="w", engine=engine, backend="cpu", shape=list(shape), dtype="float32",
                n_elements=12, status="ok", ok=True, block_times_s=list(blocks),
                median_s=float(np.median(blocks)), first_call_s=first_call_s)


def test_per_round_ratios_pair_blocks_of_the_same_round():
  np.testing.assert_allclose(speedups.per_round_ratios([2.0, 4.0, 9.0], [1.0, 2.0]), [2.0, 2.0])


def test_bootstrap_interval_on_known_data():
  median, low, high = speedups.bootstrap_median_interval([3.0] * 10)
  assert (median, low, high) == (3.0, 3.0, 3.0)
  values = np.random.default_rng(0).normal(2.0, 0.1, 200)
  median, low, high = speedups.bootstrap_median_interval(values, seed=1)
  assert low < median < high and low > 1.95 and high < 2.05
  # The standard error of a median of n normals is about 1.25 sigma / sqrt(n): a 95% interval
  # about 2 * 1.96 * 1.25 * 0.1 / sqrt(200) = 0.035 wide.
  assert 0.015 < high - low < 0.06
  assert speedups.bootstrap_median_interval(values, seed=1) == (median, low, high)  # seeded
  with pytest.raises(ValueError, match="No values"):
    speedups.bootstrap_median_interval([])


def test_break_even_arithmetic():
  eager = _row("eager", [1e-3] * 5, first_call_s=2e-3)
  jit = _row("jit", [1e-4] * 5, first_call_s=0.0451)
  # jit's extra one-time cost: (45.1 - 0.1) - (2 - 1) = 44 ms; it saves 0.9 ms a call.
  assert speedups.break_even_calls(eager, jit) == 49  # ceil(44 / 0.9)
  assert speedups.break_even_calls(jit, eager) is None  # eager never pays back
  cheap = _row("numpy", [1e-3] * 5, first_call_s=0.2)
  assert speedups.break_even_calls(cheap, jit) == 1  # jit is cheaper from the first call
  assert speedups.break_even_calls(_row("x", [1.0]), jit) is None  # no first call measured


def test_speedups_per_case_against_the_baseline():
  rows = [_row("jit", [1.0, 1.1, 0.9, 1.0]), _row("eager", [3.0, 3.3, 2.7, 3.0]),
          _row("numpy", [0.5, 0.55, 0.45, 0.5]), _row("jit", [1.0], shape=(8, 8))]
  found = {s.engine: s for s in speedups.speedups(rows, "jit")}
  assert set(found) == {"eager", "numpy"}
  assert found["eager"].ratio == pytest.approx(3.0) and found["eager"].rounds == 4
  assert found["eager"].ci_low == pytest.approx(3.0)
  assert found["eager"].ci_high == pytest.approx(3.0)
  assert found["numpy"].ratio == pytest.approx(0.5)
  assert found["eager"].to_dict()["baseline"] == "jit"


def test_baseline_must_be_swept():
  speedups.check_baseline("jit", ["numpy", "jit"])
  with pytest.raises(UsageError, match=r"--baseline='torch_eager': it is not in --engines"):
    speedups.check_baseline("torch_eager", ["numpy", "jit"])
  assert speedups.default_baseline(["numpy", "jit"]) == "jit"
  assert speedups.default_baseline(["numpy", "eager"]) == "numpy"


def test_plots_show_speedup_intervals_and_the_crossover(tmp_path):
  pytest.importorskip("matplotlib")
  from funcgrad.bench import crossover, report

  rows = [_row("jit", [1.0, 1.0], first_call_s=2.0), _row("numpy", [2.0, 2.2], first_call_s=0.1),
          _row("jit", [1.0, 1.0], shape=(6, 8)), _row("numpy", [0.5, 0.6], shape=(6, 8))]
  found = speedups.speedups(rows, "jit")
  path = tmp_path / "p.png"
  report.plot(str(path), rows, found)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  points = crossover.crossovers(found, "jit")
  assert [p.to_dict() for p in points] == [
      {"engine": "numpy", "baseline": "jit", "crossover_elements": 12, "band_low_elements": None,
       "band_high_elements": 12, "unresolved": []}]
  crossover.plot(str(tmp_path / "x.png"), found, points)
  assert (tmp_path / "x.png").stat().st_size > 1000


def test_crossover_is_the_smallest_size_whose_interval_lies_above_one():
  from funcgrad.bench import crossover
  from funcgrad.bench.workloads import ABS_LOSS, MULADD_SUM

  def s(shape, low):
    return speedups.Speedup("cpu", "w", list(shape), "numpy", "jit", low + 0.1, low, low + 0.2,
                            5, None)

  found = [s((3, 4), 0.5), s((6, 8), 1.01), s((12, 16), 0.9), s((24, 32), 1.5)]
  (point,) = crossover.crossovers(found, "jit")
  assert point.crossover_elements == 48  # 6x8, although 12x16 dips below again
  assert crossover.crossovers([s((3, 4), 0.2)], "jit")[0].crossover_elements is None
  assert crossover.geometric_sizes(200, MULADD_SUM) == [(3, 4), (6, 8), (12, 16)]
  assert crossover.geometric_sizes(200, ABS_LOSS) == [(12,), (48,), (192,)]
  with pytest.raises(UsageError, match="--max_elements=11: expected at least 12"):
    crossover.geometric_sizes(11, MULADD_SUM)


def test_min_estimator_is_the_ratio_of_minima_with_a_paired_interval():
  engine, base = [3.0, 3.6, 3.3, 9.0], [1.0, 1.5, 1.1, 1.2]
  ratio, low, high = speedups.ratio_interval(engine, base, "min")
  assert ratio == 3.0 and low <= ratio <= high
  median = speedups.ratio_interval(engine, base, "median")
  assert median[0] == pytest.approx(np.median([3.0, 2.4, 3.0, 7.5]))
  assert speedups.ratio_interval([2.0] * 5, [1.0] * 5, "min") == (2.0, 2.0, 2.0)
  with pytest.raises(ValueError, match="Unknown estimator 'mean'"):
    speedups.ratio_interval(engine, base, "mean")


def test_min_estimator_ignores_positive_delays_that_the_median_sees():
  # Half the baseline's rounds are delayed by 50%: the minimum still finds the true ratio of 2.
  base = [1.0, 1.5] * 10
  engine = [2.0] * 20
  assert speedups.ratio_interval(engine, base, "min")[0] == 2.0
  assert speedups.ratio_interval(engine, base, "median")[0] < 2.0


def test_half_width_and_resolved():
  rows = [_row("jit", [1.0, 1.1, 0.9, 1.0] * 3), _row("eager", [3.0, 3.9, 2.1, 3.3] * 3)]
  (s,) = speedups.speedups(rows, "jit", precision=0.5)
  assert s.half_width == pytest.approx((s.ci_high - s.ci_low) / 2 / s.ratio)
  assert s.resolved is True and s.estimator == "median"
  (s,) = speedups.speedups(rows, "jit", precision=1e-6)
  assert s.resolved is False
  assert speedups.relative_half_width(0.0, 1.0, 2.0) == float("inf")


@pytest.mark.parametrize("precision, max_run_time, match", [
    (0.0, None, "--precision=0.0"), (1.0, None, "--precision=1.0"),
    (float("nan"), None, "--precision=nan"), (-0.1, None, "--precision=-0.1"),
    (0.05, 0.1, "--max_run_time=0.1: it must be at least --min_run_time=0.2")])
def test_bad_precision_is_one_line(precision, max_run_time, match):
  with pytest.raises(UsageError, match=match.replace("+", r"\+")):
    speedups.check_precision(precision, 0.2, max_run_time)
  speedups.check_precision(0.05, 0.2, 0.2)
  speedups.check_precision(None, 0.2, None)


def test_unknown_estimator_is_one_line():
  with pytest.raises(UsageError, match="--estimator='mean': valid: median, min"):
    speedups.check_estimator("mean")


def test_crossover_band_from_surely_slower_to_surely_faster():
  from funcgrad.bench import crossover

  def s(n, low, high, resolved=None):
    return speedups.Speedup("cpu", "w", [n], "numpy", "jit", (low + high) / 2, low, high, 5,
                            None, resolved=resolved)

  found = [s(12, 0.3, 0.5), s(48, 0.6, 0.9), s(192, 0.8, 1.2, False), s(768, 0.95, 1.3),
           s(3072, 1.2, 1.5, True)]
  (point,) = crossover.crossovers(found, "jit")
  assert (point.band_low_elements, point.band_high_elements) == (48, 3072)
  assert point.crossover_elements == 3072 and point.unresolved == [192]
  text = crossover.render([point], "w")
  assert "band: numpy surely faster up to 48, jit surely faster from 3,072" in text
  assert "unresolved (missed the precision target): 192 elements" in text
  (never,) = crossover.crossovers(found[:3], "jit")
  assert (never.band_low_elements, never.band_high_elements) == (48, None)
  assert "nowhere in the range swept" in crossover.render([never], "w")
