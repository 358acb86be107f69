"""The timing core: warm-up, autoranged blocks, a block on every output, statistics per call.

Modelled on `torch.utils.benchmark.Timer.blocked_autorange` and JAX's `benchmarks/api_benchmark.py`:
the number of calls per block grows until the timer's own overhead is negligible against the
block, blocks repeat until a minimum run time, and every statistic is of per-call times (block
time / calls per block). The clock and the sync are injectable so the statistics are testable on a
fake clock.
"""

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from funcgrad.errors import UsageError

Clock = Callable[[], float]
Sync = Callable[[Any], Any]

NOISE_THRESHOLD = 0.10  # IQR / median above this marks a measurement noisy (as torch's Measurement)
MAX_TIMER_OVERHEAD = 1e-3  # timer overhead / block time below which a block is long enough
TARGET_ROUNDS = 10  # in rounds, each engine's block lasts about min_run_time / TARGET_ROUNDS
WARMUP_FRACTION = 0.1  # untimed warm-up before sizing blocks, as a share of min_run_time
REWARM_FRACTION = 0.2  # an untimed re-warm of this share of a block before each interleaved block
MIN_ROUNDS = 3
MAX_ROUNDS = 1000
QUIET_POLLS = 2  # a cool-down ends when no other thread ran at this many polls in a row
LEARN_COOL_DOWN_S = 0.15  # before a warm-up (learning an engine's threads), wait at most this


@dataclasses.dataclass(frozen=True)
class Stats:
  """Per-call statistics over blocks of calls.

  Attributes:
    median_s, iqr_s, min_s, mean_s, std_s: of the per-call times, one per block, in seconds.
    blocks: the number of blocks timed.
    calls_per_block: calls in each block.
    noisy: IQR / median > NOISE_THRESHOLD.
  """

  median_s: float
  iqr_s: float
  min_s: float
  mean_s: float
  std_s: float
  blocks: int
  calls_per_block: int
  noisy: bool


def block_stats(block_times_s: list[float], calls_per_block: int) -> Stats:
  """Statistics of per-call times from the total time of each block.

  Raises:
    ValueError: if there are no blocks or `calls_per_block` < 1.
  """
  if not block_times_s or calls_per_block < 1:
    raise ValueError(f"Need >= 1 block of >= 1 call, got {len(block_times_s)=} {calls_per_block=}")
  per_call = np.asarray(block_times_s, np.float64) / calls_per_block
  q25, median, q75 = np.percentile(per_call, [25, 50, 75])
  iqr = float(q75 - q25)
  return Stats(
      median_s=float(median), iqr_s=iqr, min_s=float(per_call.min()),
      mean_s=float(per_call.mean()), std_s=float(per_call.std()), blocks=len(per_call),
      calls_per_block=calls_per_block, noisy=bool(median > 0 and iqr / median > NOISE_THRESHOLD))


class Timer:
  """Times a zero-argument callable, waiting for its outputs after every call.

  Args:
    fn: the thing to time; its return value is passed to `sync`.
    sync: waits until an output is ready (default `jax.block_until_ready`, which walks any pytree
      and returns non-JAX leaves untouched).
    clock: a monotonic clock in seconds.
  """

  def __init__(self, fn: Callable[[], Any], sync: Sync = jax.block_until_ready,
               clock: Clock = time.perf_counter):
    self._fn, self._sync, self._clock = fn, sync, clock

  def timeit(self, number: int) -> float:
    """Total seconds for `number` calls, each one synced."""
    fn, sync = self._fn, self._sync
    tens, rest = divmod(number, 10)
    start = self._clock()
    for _ in itertools.repeat(None, tens):  # unrolled: the loop's own cost is paid once per ten
      sync(fn()); sync(fn()); sync(fn()); sync(fn()); sync(fn())  # noqa: E702
      sync(fn()); sync(fn()); sync(fn()); sync(fn()); sync(fn())  # noqa: E702
    for _ in itertools.repeat(None, rest):
      sync(fn())
    return self._clock() - start

  def dispatch_time(self, number: int) -> float:
    """Seconds per call for `number` calls synced only once at the end: the host-side cost."""
    fn = self._fn
    start = self._clock()
    out = None
    for _ in itertools.repeat(None, number):
      out = fn()
    self._sync(out)
    return (self._clock() - start) / number

  def overhead(self) -> float:
    """The timer's own cost of one block (a zero-call `timeit`), median of five."""
    return float(np.median([self.timeit(0) for _ in range(5)]))


def per_call_stats(per_call_s: Sequence[float], calls_per_block: int) -> Stats:
  """`Stats` of per-call times, one per block (blocks of `calls_per_block` calls)."""
  return block_stats([t * calls_per_block for t in per_call_s], calls_per_block)


def warm_up(timer: Timer, seconds: float) -> None:
  """Calls until `seconds` have passed (at least one call), in growing batches: caches, thread
  pools and branch predictors warm, so that the block size chosen next is the warm one."""
  number, spent = 1, 0.0
  while True:
    spent += timer.timeit(number)
    if spent >= seconds:
      return
    number *= 2


def calls_for_block(timer: Timer, target_s: float) -> int:
  """Calls per block so that a block lasts at least `target_s` and the timer's own overhead is
  below MAX_TIMER_OVERHEAD of it (one call when a single call is longer than that)."""
  need = max(target_s, timer.overhead() / MAX_TIMER_OVERHEAD)
  number = 1
  while True:
    elapsed = timer.timeit(number)
    if elapsed >= need:
      return number
    per_call = max(elapsed / number, 1e-9)
    number = min(number * 100, max(number * 2, math.ceil(1.1 * need / per_call)))


@dataclasses.dataclass(frozen=True)
class Rounds:
  """Per-call block times of several callables timed in rounds.

  Attributes:
    per_call_s: per name, one per-call time per block; with interleaving, block i of every name
      was timed in round i.
    calls_per_block: per name.
    order: the order the names ran in, per round.
    interleaved: whether each round ran one block of every name (else each name ran alone).
    stopped: why the rounds ended: `min_run_time` (the floor was reached and nothing asked for
      more), `precision` (the stopping rule was met), `max_run_time` or `max_rounds`.
    interference: per name, the shares of the machine's CPU time that ran beside its blocks
      (`interference.SOURCES`; None without a meter or without /proc).
    cool_down_s: seconds spent waiting for other engines' threads to go quiet.
  """

  per_call_s: dict[str, list[float]]
  calls_per_block: dict[str, int]
  order: list[list[str]]
  interleaved: bool
  stopped: str = "min_run_time"
  interference: dict[str, dict[str, float | None]] | None = None
  cool_down_s: float = 0.0


StopRule = Callable[[Mapping[str, Sequence[float]]], bool]  # per-call times so far -> enough?

ISOLATIONS = ("cooldown", "none")
DEFAULT_ISOLATION = "cooldown"  # chosen from measurements: docs/PERFORMANCE.md, Isolation


def check_isolation(isolation: str, prefix: str = "--") -> None:
  """Raises UsageError for an isolation mode not in ISOLATIONS."""
  if isolation not in ISOLATIONS:
    raise UsageError(f"Invalid {prefix}isolation={isolation!r}: valid: {', '.join(ISOLATIONS)} "
                     "(cooldown: before each block, wait until the other engines' threads "
                     "sleep; none: blocks back to back, as before).")


class _Meter(Protocol):
  """What `time_rounds` needs of an `interference.Meter`."""

  def read(self) -> Any: ...
  def learn(self, name: str, before: Any, after: Any) -> None: ...
  def begin(self, name: str) -> None: ...
  def record(self, name: str, before: Any, after: Any, wall_s: float) -> Any: ...
  def shares(self, name: str) -> dict[str, float | None]: ...
  def cool_down(self, name: str | None = None, quiet_polls: int = 2,
                max_s: float = ...) -> float: ...


def time_rounds(timers: Mapping[str, Timer], min_run_time: float, seed: int = 0,
                interleave: bool = True, min_rounds: int = MIN_ROUNDS,
                max_rounds: int = MAX_ROUNDS, stop: StopRule | None = None,
                max_run_time: float | None = None, meter: _Meter | None = None,
                cool_down: bool = False, clock: Clock = time.perf_counter) -> Rounds:
  """Times every timer in blocks until each has `min_run_time` of blocks (and `min_rounds`).

  Interleaved (the idea of Google Benchmark's random interleaving): each round runs one block of
  every timer, in a fresh random order per round (seeded), each block after an untimed re-warm
  of REWARM_FRACTION of it, so a drift that lasts seconds lands on every timer alike and the
  ratio of two timers' blocks within one round cancels it. Not interleaved: each timer's blocks
  run back to back, one timer after the other (the contiguous mode, for comparison).

  Args:
    stop: with interleaving, once the floor is reached, rounds go on until `stop(per_call_s)` is
      true (a precision target) or `max_run_time` seconds of rounds have passed.
    max_run_time: the most seconds of rounds (warm-up and sizing excluded) when `stop` is given.
    meter: reads what ran beside each block (`interference.Meter`); it learns each timer's
      threads during its warm-up, after every other thread has gone quiet.
    cool_down: before each block (and its re-warm), wait until the other timers' threads are
      quiet (`meter.cool_down`): their spinning pools do not run during this one's block.
    clock: measures `max_run_time`.
  """
  names = list(timers)
  for name in names:
    if meter is not None:
      meter.cool_down(None, QUIET_POLLS, max_s=LEARN_COOL_DOWN_S)
      before = meter.read()
    warm_up(timers[name], WARMUP_FRACTION * min_run_time)
    if meter is not None:
      meter.learn(name, before, meter.read())
  calls = {n: calls_for_block(timers[n], min_run_time / TARGET_ROUNDS) for n in names}
  per_call: dict[str, list[float]] = {n: [] for n in names}
  totals = dict.fromkeys(names, 0.0)
  order: list[list[str]] = []
  rng = np.random.default_rng(seed)
  waited = [0.0]

  def block(name: str, rewarm: bool) -> None:
    if meter is not None:
      if cool_down:
        waited[0] += meter.cool_down(name, QUIET_POLLS)
      meter.begin(name)
    rewarm_calls = int(calls[name] * REWARM_FRACTION) if rewarm else 0
    if rewarm_calls:
      timers[name].timeit(rewarm_calls)
    before = meter.read() if meter is not None else None
    elapsed = timers[name].timeit(calls[name])
    if meter is not None:
      meter.record(name, before, meter.read(), elapsed)
    per_call[name].append(elapsed / calls[name])
    totals[name] += elapsed

  def floor_reached(name: str) -> bool:
    return totals[name] >= min_run_time and len(per_call[name]) >= min_rounds

  def capped(name: str) -> bool:
    return len(per_call[name]) >= max_rounds

  stopped = "min_run_time"
  start = clock()
  if interleave:
    while True:
      if all(floor_reached(n) or capped(n) for n in names):
        if not all(floor_reached(n) for n in names):
          stopped = "max_rounds"
          break
        if stop is None:
          break
        if stop(per_call):
          stopped = "precision"
          break
        if max_run_time is not None and clock() - start >= max_run_time:
          stopped = "max_run_time"
          break
        if any(capped(n) for n in names):
          stopped = "max_rounds"
          break
      order.append([names[i] for i in rng.permutation(len(names))])
      for name in order[-1]:
        block(name, rewarm=True)
  else:
    for name in names:
      while not (floor_reached(name) or capped(name)):
        block(name, rewarm=False)
      order.append([name] * len(per_call[name]))
  shares = {n: meter.shares(n) for n in names} if meter is not None else None
  return Rounds(per_call, calls, order, interleave, stopped, shares, waited[0])


def time_once(fn: Callable[[], Any], sync: Sync = jax.block_until_ready,
              clock: Clock = time.perf_counter) -> tuple[Any, float]:
  """Runs `fn` once, synced; returns its output and the seconds it took (a first call)."""
  start = clock()
  out = sync(fn())
  return out, clock() - start


def autorange(timer: Timer, min_run_time: float = 0.2, min_blocks: int = MIN_ROUNDS) -> Stats:
  """The runner's own autorange for one callable alone: `time_rounds` of it, not interleaved
  (warm-up, blocks sized by `calls_for_block`, at least `min_blocks` of them).

  Returns:
    `Stats` of the per-call times.
  """
  rounds = time_rounds({"timed": timer}, min_run_time, interleave=False, min_rounds=min_blocks)
  return per_call_stats(rounds.per_call_s["timed"], rounds.calls_per_block["timed"])
