"""The timing core on a fake clock: exact statistics, autorange sizing, dispatch timing."""

import numpy as np
import pytest

from funcgrad.bench.timing import (
  MAX_TIMER_OVERHEAD,
  NOISE_THRESHOLD,
  Stats,
  Timer,
  autorange,
  block_stats,
  calls_for_block,
  time_once,
)


class FakeClock:
  """A clock that moves only when told: `cost` per call of the timed function, `tick` per read."""

  def __init__(self, cost: float, tick: float = 0.0):
    self.now, self.cost, self.tick, self.calls, self.syncs = 0.0, cost, tick, 0, 0

  def __call__(self) -> float:
    self.now += self.tick
    return self.now

  def fn(self):
    self.now += self.cost
    self.calls += 1
    return self.calls

  def sync(self, out):
    self.syncs += 1
    return out


def test_block_stats_exact_values():
  stats = block_stats([1.0, 2.0, 3.0, 4.0, 10.0], calls_per_block=10)
  assert stats == Stats(median_s=0.3, iqr_s=pytest.approx(0.2), min_s=0.1, mean_s=0.4,
                        std_s=pytest.approx(np.std([0.1, 0.2, 0.3, 0.4, 1.0])), blocks=5,
                        calls_per_block=10, noisy=True)


def test_block_stats_quiet_and_noisy():
  assert not block_stats([1.0, 1.01, 0.99, 1.0], 1).noisy
  spread = 1.0 + 2 * NOISE_THRESHOLD
  assert block_stats([1.0, spread, 1.0, spread], 1).noisy


@pytest.mark.parametrize("times, calls", [([], 1), ([1.0], 0)])
def test_block_stats_rejects_empty(times, calls):
  with pytest.raises(ValueError, match="Need >= 1 block"):
    block_stats(times, calls)


def test_autorange_on_fake_clock():
  clock = FakeClock(cost=1e-6)
  stats = autorange(Timer(clock.fn, clock.sync, clock), min_run_time=0.2)
  assert stats.median_s == pytest.approx(1e-6) and stats.iqr_s == pytest.approx(0, abs=1e-15)
  assert not stats.noisy
  # The runner's rule: a block lasts at least min_run_time / TARGET_ROUNDS = 20 ms of 1 us calls
  # (grown x100, then to 1.1x the need): 22_000 calls, and blocks until 0.2 s of them.
  assert stats.calls_per_block == 22_000
  assert stats.blocks * stats.calls_per_block * 1e-6 >= 0.2 - 1e-9
  assert clock.syncs <= clock.calls  # every block synced, warm-up included


def test_autorange_grows_block_until_timer_overhead_negligible():
  # Each clock read costs 1 us: timer overhead per block is 1 us. A 1 us call needs a block of
  # >= 1000 us for the overhead to be <= 0.1% of it, whatever the (shorter) target.
  clock = FakeClock(cost=1e-6, tick=1e-6)
  timer = Timer(clock.fn, clock.sync, clock)
  assert timer.overhead() == pytest.approx(1e-6)
  number = calls_for_block(timer, target_s=1e-4)
  assert timer.overhead() <= MAX_TIMER_OVERHEAD * timer.timeit(number)
  assert number < 2000  # and not far past it


def test_slow_call_gets_one_call_per_block_and_min_blocks():
  clock = FakeClock(cost=0.5)
  stats = autorange(Timer(clock.fn, clock.sync, clock), min_run_time=0.2, min_blocks=3)
  assert stats.calls_per_block == 1 and stats.blocks == 3 and stats.median_s == 0.5


def test_warmup_calls_are_not_timed():
  clock = FakeClock(cost=1.0)
  stats = autorange(Timer(clock.fn, clock.sync, clock), min_run_time=0.01, min_blocks=1)
  assert stats.blocks == 1
  assert clock.calls == 1 + 1 + 1  # the warm-up, the sizing block, one timed block


def test_dispatch_time_syncs_once():
  clock = FakeClock(cost=2e-6)
  per_call = Timer(clock.fn, clock.sync, clock).dispatch_time(100)
  assert per_call == pytest.approx(2e-6) and clock.syncs == 1


def test_time_once_returns_output():
  clock = FakeClock(cost=0.25)
  out, seconds = time_once(clock.fn, clock.sync, clock)
  assert out == 1 and seconds == 0.25


class DriftingClock(FakeClock):
  """A fake clock whose every call costs `cost` times a factor that drifts with time."""

  def __init__(self, costs: dict[str, float], drift: float):
    super().__init__(cost=0.0)
    self.costs, self.drift, self.log = costs, drift, []

  def fn_for(self, name: str):
    def fn():
      self.log.append(name)
      self.now += self.costs[name] * (1.0 + self.drift * self.now)
      return name

    return fn


def _timers(clock, names):
  from funcgrad.bench.timing import Timer as T

  return {n: T(clock.fn_for(n), sync=lambda out: out, clock=clock) for n in names}


def test_rounds_are_interleaved_in_a_seeded_random_order():
  from funcgrad.bench.timing import time_rounds

  clock = DriftingClock({"a": 1e-3, "b": 2e-3, "c": 4e-3}, drift=0.0)
  rounds = time_rounds(_timers(clock, "abc"), min_run_time=0.5, seed=3)
  assert rounds.interleaved and len(rounds.order) >= 3
  assert all(sorted(order) == ["a", "b", "c"] for order in rounds.order)  # one block each
  assert len({tuple(o) for o in rounds.order}) > 1  # a fresh order per round
  again = time_rounds(_timers(DriftingClock(clock.costs, 0.0), "abc"), 0.5, seed=3)
  assert again.order == rounds.order  # seeded
  for name, cost in clock.costs.items():
    assert len(rounds.per_call_s[name]) == len(rounds.order)
    np.testing.assert_allclose(rounds.per_call_s[name], cost)  # exact on a steady clock
    assert sum(rounds.per_call_s[name]) * rounds.calls_per_block[name] >= 0.5


def test_interleaving_cancels_a_slow_drift_where_contiguous_timing_does_not():
  from funcgrad.bench import speedups
  from funcgrad.bench.timing import time_rounds

  costs = {"fast": 1e-3, "slow": 2e-3}  # the true ratio is 2
  inter = time_rounds(_timers(DriftingClock(costs, 0.2), costs), 1.0, seed=0)
  contiguous = time_rounds(_timers(DriftingClock(costs, 0.2), costs), 1.0, seed=0,
                           interleave=False)
  assert not contiguous.interleaved

  def ratio(rounds):
    return float(np.median(speedups.per_round_ratios(rounds.per_call_s["slow"],
                                                     rounds.per_call_s["fast"])))

  assert abs(ratio(inter) - 2.0) < 0.08
  assert abs(ratio(contiguous) - 2.0) > 0.2  # the drift landed on one engine only


def test_rewarm_runs_before_each_interleaved_block_untimed():
  from funcgrad.bench.timing import REWARM_FRACTION, time_rounds

  clock = DriftingClock({"a": 1e-4}, drift=0.0)
  rounds = time_rounds(_timers(clock, "a"), min_run_time=0.1, seed=0)
  calls = rounds.calls_per_block["a"]
  assert calls >= 5
  rewarm = int(calls * REWARM_FRACTION)
  timed = len(rounds.per_call_s["a"]) * calls
  assert clock.log.count("a") >= timed + len(rounds.order) * rewarm


class NoisyClock(DriftingClock):
  """Every call costs its engine's cost times a seeded positive delay factor (1 + |noise|)."""

  def __init__(self, costs, noise, seed=0):
    super().__init__(costs, drift=0.0)
    self.noise, self.rng = noise, np.random.default_rng(seed)

  def fn_for(self, name):
    def fn():
      self.now += self.costs[name] * (1.0 + abs(self.rng.normal(0.0, self.noise)))
      return name

    return fn


def _precision_rounds(noise, precision, max_run_time, min_run_time=0.05):
  from funcgrad.bench import speedups
  from funcgrad.bench.timing import time_rounds

  clock = NoisyClock({"jit": 1e-3, "eager": 3e-3}, noise)
  rule = speedups.precision_rule("jit", precision)
  return time_rounds(_timers(clock, ["jit", "eager"]), min_run_time, seed=0, stop=rule,
                     max_run_time=max_run_time, clock=clock), rule


def test_precision_rule_stops_once_the_half_width_is_reached():
  from funcgrad.bench import speedups

  rounds, rule = _precision_rounds(noise=0.3, precision=0.05, max_run_time=100.0)
  assert rounds.stopped == "precision" and rule(rounds.per_call_s)
  n = len(rounds.order)
  ratio, low, high = speedups.ratio_interval(rounds.per_call_s["eager"][:n - 1],
                                             rounds.per_call_s["jit"][:n - 1])
  assert speedups.relative_half_width(ratio, low, high) > 0.05  # one round fewer was not enough
  floor, _ = _precision_rounds(noise=0.3, precision=0.999, max_run_time=100.0)
  assert len(floor.order) < n  # the floor alone takes fewer rounds
  from funcgrad.bench.runner import Result

  rows = [Result("w", name, "cpu", [1], "float32", 1, block_times_s=blocks)
          for name, blocks in rounds.per_call_s.items()]
  (s,) = speedups.speedups(rows, "jit", precision=0.05)
  assert s.resolved and s.half_width <= 0.05  # the report agrees with the stopping rule


def test_precision_rule_stops_at_max_run_time_and_the_speedup_is_unresolved():
  from funcgrad.bench import speedups
  from funcgrad.bench.runner import Result

  rounds, _ = _precision_rounds(noise=1.0, precision=0.001, max_run_time=0.2)
  assert rounds.stopped == "max_run_time"
  spent = sum(len(v) * rounds.calls_per_block[k] * np.mean(v)
              for k, v in rounds.per_call_s.items())
  assert 0.2 <= spent < 0.2 + 0.05  # the cap, plus at most one round past it
  rows = [Result("w", name, "cpu", [1], "float32", 1, block_times_s=blocks)
          for name, blocks in rounds.per_call_s.items()]
  (s,) = speedups.speedups(rows, "jit", precision=0.001)
  assert s.resolved is False and s.half_width > 0.001
  (s,) = speedups.speedups(rows, "jit")
  assert s.resolved is None  # no target, no verdict


def test_without_a_stop_rule_rounds_end_at_the_floor():
  from funcgrad.bench.timing import time_rounds

  clock = NoisyClock({"a": 1e-3, "b": 1e-3}, 0.5)
  rounds = time_rounds(_timers(clock, "ab"), 0.05, seed=0, max_run_time=10.0, clock=clock)
  assert rounds.stopped == "min_run_time" and rounds.interference is None
  assert sum(rounds.per_call_s["a"]) * rounds.calls_per_block["a"] < 0.05 + 0.02
