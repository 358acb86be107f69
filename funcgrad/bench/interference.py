"""What else ran beside each timed block: other processes, this run's other engines, steal.

Linux keeps the counters: `/proc/stat` (every CPU's busy, idle and steal time, in clock ticks),
`/proc/self/stat` (this process's CPU time, all threads) and `/proc/self/task/<tid>/schedstat`
(each thread's time on a CPU, in nanoseconds; `task/<tid>/stat` in ticks where schedstat is
missing). A `Meter` reads them before and after every block; per row it sums the differences
into shares of the machine's CPU time during that row's blocks (seconds of wall time x CPUs):

- `other_processes`: busy time of the whole machine less this run's own (this process and its
  worker processes): another job, a test suite, a CPU hog.
- `other_engines`: CPU time of this run's threads that do not belong to the engine being timed:
  a peer's pool still spinning after its own block (OpenBLAS, OpenMP), JAX's pool after jit's.
- `steal`: time the hypervisor gave another guest.

Which threads belong to an engine is learned, not guessed from names (OpenBLAS and OpenMP
workers are all called `python`, and threads started after absl renames the main thread carry
the script's name): before an engine's untimed warm-up the meter waits until no thread but the
timing thread is running or runnable (`cool_down`, from each thread's state in
`task/<tid>/stat`: a spinning pool stays runnable even while another process holds the CPU, so
the state says what a window of CPU time can miss), then every thread that runs during the
warm-up is the engine's, with the rest of its named pool (XLA's `tf_XLAEigen` workers wake in
any order). A thread two engines share (JAX's pool, for eager and jit) belongs to both, and the
timing thread to all of them, so neither is ever counted against its own engine.

A warm-up does not wake every thread an engine uses (one of the JAX CPU client's threads runs
only now and then), so each block goes on learning: `begin` notes which foreign threads are
running or runnable at the block's start (after the cool-down, if any), and a foreign thread
that was asleep then and ran during the block was woken by the block's own work: it becomes the
engine's. `other_engines` is the CPU time of the threads that were already running when the
block began, the ones whose spinning the block had to share the CPUs with.

How fine the machine's side is: `/proc/stat` counts busy time in clock ticks (10 ms at the
usual 100 a second), sampled at each tick, while this process's time is its exact run time
rounded to ticks. A block's `other_processes` is therefore off by about `TICK_NOISE` of a tick
either way (measured on 2 CPUs, quiet: 7 ms for blocks of 1 to 50 ms, averaging 0; more CPUs
busy at once may add to it). The blocks' differences are summed with their signs (a floor at
zero per block turned that noise into 2 ms of phantom processes per block: 2 cores' worth
beside 1 ms blocks), and a row's share is what is left above twice the noise of its blocks'
sum (`RESOLVE_SIGMAS` x TICK_NOISE x tick x sqrt(blocks)): what the counters can tell from
nothing. A row of ten 1 ms blocks cannot resolve any share; ten 100 ms blocks resolve about 2%
of 2 CPUs.

Without `/proc` (not Linux), every share is None and nothing else changes.
"""

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Clock = Callable[[], float]
Shares = dict[str, float | None]

SOURCES = ("other_processes", "other_engines", "steal")
NOTE_CORES = 0.10  # a table notes interference above this many cores' worth elsewhere
ACTIVE_S = 1e-4  # a thread that ran at least this long during a warm-up belongs to the engine
POLL_S = 0.001  # cool_down looks at the other threads' states this often ...
MAX_COOL_DOWN_S = 0.25  # ... for at most this long (OpenBLAS spins ~0.1 s; the shares say
# what was left when a busy machine keeps a starved pool runnable longer)
TICK_NOISE = 0.75  # a block's other_processes is off by this many clock ticks (1 sigma)
RESOLVE_SIGMAS = 2.0  # a row's other_processes is what its blocks' sum holds above this noise
READ_LIMIT = 4096  # the most bytes read of a process's or thread's file
STAT_LIMIT = 1 << 20  # ... and of /proc/stat, a line per CPU before the interrupt counts
_NULL: Shares = dict.fromkeys(SOURCES)


@dataclasses.dataclass(frozen=True)
class Counters:
  """One reading of the counters, in seconds.

  Attributes:
    busy_s: every CPU's busy time (user, nice, system, irq, softirq).
    steal_s: every CPU's steal time.
    own_s: this process's CPU time (all its threads) and its worker processes'.
    threads_s: per thread id of this process, its CPU time.
    cpus: the CPUs `/proc/stat` lists.
    tick_s: the clock tick `busy_s` and `own_s` are counted in (0: exact, as in fakes).
  """

  busy_s: float
  steal_s: float
  own_s: float
  threads_s: Mapping[int, float]
  cpus: int
  tick_s: float = 0.0


def _read(path: str, limit: int = READ_LIMIT) -> str:
  """At most `limit` bytes of a file, as text. A block reads a few dozen of these (one per
  thread), so this is `os.read` on a raw descriptor: a quarter of the cost of `open()`."""
  fd = os.open(path, os.O_RDONLY)
  try:
    return os.read(fd, limit).decode("ascii", "replace")
  finally:
    os.close(fd)


def _read_long(path: str, limit: int = STAT_LIMIT, chunk: int = 1 << 16) -> str:
  """At most `limit` bytes of a file that may be long (`/proc/stat`), read `chunk` at a time
  until its end: one read into a `limit`-sized buffer cost four times as much."""
  fd = os.open(path, os.O_RDONLY)
  try:
    parts, size = [], 0
    while size < limit:
      part = os.read(fd, min(chunk, limit - size))
      if not part:
        break
      parts.append(part)
      size += len(part)
    return b"".join(parts).decode("ascii", "replace")
  finally:
    os.close(fd)


def _stat_times(text: str) -> float:
  """utime + stime, in ticks, from a `/proc/<pid>/stat` line (the name may hold spaces)."""
  fields = text[text.rindex(")") + 1:].split()
  return float(fields[11]) + float(fields[12])


def _thread_seconds(task_dir: str, tick: float) -> float:
  # Paths by concatenation: os.path.join was half of each file's cost, at a few files a thread.
  try:
    return int(_read(task_dir + "/schedstat").split()[0]) * 1e-9
  except (OSError, ValueError, IndexError):
    return _stat_times(_read(task_dir + "/stat")) * tick


def read_counters(proc: str = "/proc", pid: str = "self", workers: Iterable[int] = (),
                  tick: float | None = None) -> Counters | None:
  """The counters now, or None where `proc` cannot be read (no Linux, a sandbox).

  Args:
    proc: where procfs is mounted (a fake tree in tests).
    pid: this process (`self`, or a number).
    workers: process ids whose CPU time is this run's own too.
    tick: seconds per clock tick (default: the system's `SC_CLK_TCK`).
  """
  tick = tick or 1.0 / os.sysconf("SC_CLK_TCK")
  try:
    lines = _read_long(f"{proc}/stat").splitlines()
    total = [float(v) for v in lines[0].split()[1:9]]
    user, nice, system, _, _, irq, softirq, steal = total + [0.0] * (8 - len(total))
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
    own = sum(_stat_times(_read(f"{proc}/{p}/stat")) for p in (pid, *workers))
    task_root = f"{proc}/{pid}/task"
    threads = {}
    for tid in os.listdir(task_root):
      try:
        threads[int(tid)] = _thread_seconds(f"{task_root}/{tid}", tick)
      except (OSError, ValueError):
        continue  # the thread ended between the listing and the read
  except (OSError, ValueError, IndexError):
    return None
  return Counters((user + nice + system + irq + softirq) * tick, steal * tick, own * tick,
                  threads, max(cpus, 1), tick)


def running_threads(proc: str = "/proc", pid: str = "self") -> set[int] | None:
  """Threads of `pid` in state R (running or waiting for a CPU), or None without procfs."""
  task_root = f"{proc}/{pid}/task"
  try:
    tids = os.listdir(task_root)
  except OSError:
    return None
  out = set()
  for tid in tids:
    try:
      text = _read(f"{task_root}/{tid}/stat")
      if text[text.rindex(")") + 1:].split()[0] == "R":
        out.add(int(tid))
    except (OSError, ValueError, IndexError):
      continue  # ended between the listing and the read
  return out


def thread_names(proc: str = "/proc", pid: str = "self") -> dict[int, str]:
  """Each thread's name (`task/<tid>/comm`); empty without procfs."""
  task_root = f"{proc}/{pid}/task"
  out = {}
  try:
    tids = os.listdir(task_root)
  except OSError:
    return out
  for tid in tids:
    try:
      out[int(tid)] = _read(f"{task_root}/{tid}/comm").strip()
    except (OSError, ValueError):
      continue
  return out


@dataclasses.dataclass
class Tally:
  """Summed differences over blocks: the raw material of a row's shares."""

  wall_s: float = 0.0
  cpus: int = 1
  other_processes_s: float = 0.0
  other_engines_s: float = 0.0
  steal_s: float = 0.0
  blocks: int = 0
  noise_s2: float = 0.0  # the variance of other_processes_s from the counters' ticks

  def add(self, other: "Tally") -> None:
    self.wall_s += other.wall_s
    self.cpus = max(self.cpus, other.cpus)
    self.other_processes_s += other.other_processes_s
    self.other_engines_s += other.other_engines_s
    self.steal_s += other.steal_s
    self.blocks += other.blocks
    self.noise_s2 += other.noise_s2

  def shares(self) -> Shares:
    """Each source as a share of the machine's CPU time (None before any block); other
    processes' is what the summed blocks hold above `RESOLVE_SIGMAS` of their tick noise."""
    capacity = self.wall_s * self.cpus
    if not self.blocks or capacity <= 0:
      return dict(_NULL)
    resolved = self.other_processes_s - RESOLVE_SIGMAS * math.sqrt(self.noise_s2)
    raw = (resolved, self.other_engines_s, self.steal_s)
    return {k: min(1.0, max(0.0, v / capacity)) for k, v in zip(SOURCES, raw, strict=True)}


def difference(before: Counters, after: Counters, wall_s: float, own_threads: Iterable[int],
               main_thread: int | None = None,
               running_at_start: Iterable[int] | None = None) -> Tally:
  """What ran beside one block, from the counters read at its start and its end.

  Args:
    before, after: the readings.
    wall_s: the block's wall time.
    own_threads: the threads of the engine being timed (not counted as other engines).
    main_thread: the timing thread (never counted).
    running_at_start: the foreign threads running or runnable when the block began; when given,
      only they count as other engines (a thread asleep then was woken by the block).
  """
  own = set(own_threads) | ({main_thread} if main_thread is not None else set())
  counted = None if running_at_start is None else set(running_at_start)
  others = sum(max(0.0, t - before.threads_s.get(tid, 0.0))
               for tid, t in after.threads_s.items()
               if tid not in own and (counted is None or tid in counted))
  # Signed: the ticks' noise averages out over blocks (see the module's docstring).
  outside = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
  return Tally(wall_s, after.cpus, outside, others, max(0.0, after.steal_s - before.steal_s), 1,
               (TICK_NOISE * after.tick_s) ** 2)


def active_threads(before: Counters, after: Counters, at_least_s: float = ACTIVE_S) -> set[int]:
  """Threads that ran at least `at_least_s` between two readings."""
  return {tid for tid, t in after.threads_s.items()
          if t - before.threads_s.get(tid, 0.0) >= at_least_s}


class Meter:
  """Reads the counters around blocks and sums, per engine, what ran beside them.

  Args:
    read: returns `Counters` or None (default: `read_counters` on this process).
    running: returns the threads now running or runnable (default: `running_threads`).
    names: returns each thread's name (default: `thread_names`).
    clock: seconds, for the cool-down's windows.
    sleep: waits, for the cool-down.
    main_thread: the timing thread's id (default: the calling thread's).
  """

  def __init__(self, read: Callable[[], Counters | None] | None = None,
               clock: Clock = time.perf_counter, sleep: Callable[[float], None] = time.sleep,
               main_thread: int | None = None,
               running: Callable[[], set[int] | None] | None = None,
               names: Callable[[], dict[int, str]] | None = None):
    self._read = read or read_counters
    self._running = running or running_threads
    self._names = names or thread_names
    self._clock, self._sleep = clock, sleep
    self.main_thread = threading_id() if main_thread is None else main_thread
    self.threads: dict[str, set[int]] = {}
    self.tallies: dict[str, Tally] = {}
    self._running_at_start: dict[str, set[int]] = {}
    self._last_poll: tuple[str | None, set[int]] | None = None  # a cool-down's, that ended quiet
    self.available = self._read() is not None

  def read(self) -> Counters | None:
    self._last_poll = None
    return self._read() if self.available else None

  def learn(self, name: str, before: Counters | None, after: Counters | None) -> None:
    """The threads that ran between `before` and `after` (an engine's warm-up) are `name`'s,
    with every thread of a named pool one of them belongs to (XLA's `tf_XLAEigen` workers wake
    in any order: a warm-up that used some of them owns all)."""
    if before is None or after is None:
      return
    active = active_threads(before, after)
    names = self._names()
    main_name = names.get(self.main_thread)
    pools = {names[t] for t in active if names.get(t) and names[t] != main_name}
    active |= {t for t, n in names.items() if n in pools}
    self.threads.setdefault(name, set()).update(active)

  def begin(self, name: str) -> None:
    """Notes the threads outside `name`'s that are running or runnable now, as a block of
    `name` begins (after its cool-down and before its re-warm): what `record` counts."""
    if not self.available:
      return
    polled, self._last_poll = self._last_poll, None
    # Right after `cool_down(name)` ended quiet, its last poll is now: no second look needed.
    running = polled[1] if polled is not None and polled[0] == name else self._running()
    if running is None:
      self._running_at_start.pop(name, None)
      return
    self._running_at_start[name] = running - self.threads.get(name, set()) - {self.main_thread}

  def record(self, name: str, before: Counters | None, after: Counters | None,
             wall_s: float) -> Tally | None:
    """Adds one block of `name` to its tally; returns the block's own difference.

    After `begin(name)`, only the foreign threads running when the block began count, and
    the others that ran (the block woke them) become `name`'s; without it, every thread
    outside `name`'s counts.
    """
    if before is None or after is None:
      return None
    own = self.threads.setdefault(name, set())
    at_start = self._running_at_start.pop(name, None)
    tally = difference(before, after, wall_s, own, self.main_thread, at_start)
    if at_start is not None:
      own.update(t for t in active_threads(before, after)
                 if t not in at_start and t != self.main_thread)
    self.tallies.setdefault(name, Tally()).add(tally)
    return tally

  def shares(self, name: str) -> Shares:
    tally = self.tallies.get(name)
    return tally.shares() if tally else dict(_NULL)

  def total(self) -> Tally:
    out = Tally()
    for tally in self.tallies.values():
      out.add(tally)
    return out

  def cool_down(self, name: str | None = None, quiet_polls: int = 2,
                poll_s: float = POLL_S, max_s: float = MAX_COOL_DOWN_S) -> float:
    """Waits until no thread outside `name`'s (all but the timing thread when None) is running
    or runnable (a spinning pool is, even while another process holds the CPU) at `quiet_polls`
    polls in a row, `poll_s` apart, or until `max_s` has passed; returns the seconds waited.
    """
    if not self.available:
      return 0.0
    own = set(self.threads.get(name, ())) if name else set()
    own.add(self.main_thread)
    start, quiet = self._clock(), 0
    self._last_poll = None
    while quiet < quiet_polls and self._clock() - start < max_s:
      running = self._running()
      if running is None:
        break
      quiet = quiet + 1 if not running - own else 0
      if quiet < quiet_polls:
        self._sleep(poll_s)
      else:
        self._last_poll = (name, running)  # nothing runs after it: `begin` may take it
    return self._clock() - start


def threading_id() -> int:
  """The kernel's id of the calling thread (what `/proc/self/task` lists)."""
  import threading  # noqa: PLC0415 - only for the native id
  return threading.get_native_id()


def machine_cpus(proc: str = "/proc") -> int | None:
  """The CPUs `/proc/stat` lists (what the shares are of), or None without procfs."""
  counters = read_counters(proc)
  return counters.cpus if counters is not None else None


def run_totals(rows: Sequence[Any], isolation: str, cpus: int | None = None) -> dict[str, Any]:
  """The run's shares over every timed block of `rows` (each row weighted by its timed wall
  time), for the machine document, with the CPUs and the isolation mode.

  Args:
    rows: `runner.Result`s (`interference`, `block_times_s`, `calls_per_block`).
    isolation: the mode the rows were timed in.
    cpus: the machine's CPUs (default: read from /proc).
  """
  sums, walls = dict.fromkeys(SOURCES, 0.0), 0.0
  for row in rows:
    shares = getattr(row, "interference", None)
    if not shares or any(shares.get(k) is None for k in SOURCES) or not row.block_times_s:
      continue
    wall = sum(row.block_times_s) * (row.calls_per_block or 1)
    walls += wall
    for k in SOURCES:
      sums[k] += shares[k] * wall
  out: dict[str, Any] = {k: (sums[k] / walls if walls > 0 else None) for k in SOURCES}
  return {**out, "cpus": cpus if cpus is not None else machine_cpus(), "isolation": isolation}


def note(rows: Sequence[Mapping[str, Any]], cpus: int | None,
         cores: float = NOTE_CORES) -> str | None:
  """One line naming the worst source, when any row saw more than `cores` of a core elsewhere.

  Args:
    rows: dicts with `interference` (shares, or None) and the row's names (`engine`,
      `workload`, `shape`).
    cpus: the machine's CPUs (the shares are of all of them); None: no note.
  """
  worst = None
  for row in rows:
    shares = row.get("interference") or {}
    for source in SOURCES:
      share = shares.get(source)
      if share is not None and share * (cpus or 0) > cores and \
          (worst is None or share > worst[0]):
        worst = (share, source, row)
  if worst is None:
    return None
  share, source, row = worst
  shape = "x".join(str(d) for d in row.get("shape") or ()) or "-"
  return (f"note: busy machine: up to {share * cpus:.2f} of a core went to {source} "
          f"({share:.0%} of the machine's CPU time) during {row.get('engine')}'s blocks of "
          f"{row.get('workload')} {shape}; these timings may not hold on a quiet machine.")
