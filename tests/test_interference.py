"""Interference from known counters (fake /proc, fake readings), a real hog, real threads."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from funcgrad.bench import interference
from funcgrad.bench.interference import Counters, Meter, Tally

TICK = 0.01  # seconds per clock tick in the fake tree


def write_proc(root, user, system, idle, steal, own_ticks, threads_ns, pid="self",
               name="python (x) y"):
  """A fake procfs: /proc/stat with two CPUs, this process's stat and per-thread schedstat."""
  os.makedirs(root / pid / "task", exist_ok=True)
  (root / "stat").write_text(f"cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\n"
                             "cpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\nintr 5\n")
  utime, stime = own_ticks // 2, own_ticks - own_ticks // 2
  fields = ["S"] + ["0"] * 10 + [str(utime), str(stime)] + ["0"] * 30
  (root / pid / "stat").write_text(f"42 ({name}) " + " ".join(fields) + "\n")
  for tid, ns in threads_ns.items():
    os.makedirs(root / pid / "task" / str(tid), exist_ok=True)
    (root / pid / "task" / str(tid) / "schedstat").write_text(f"{ns} 0 0\n")


def test_read_counters_from_fake_proc(tmp_path):
  write_proc(tmp_path, user=300, system=100, idle=50, steal=7, own_ticks=120,
             threads_ns={1: 2_000_000_000, 2: 500_000_000})
  c = interference.read_counters(str(tmp_path), tick=TICK)
  assert c.busy_s == pytest.approx(4.0) and c.steal_s == pytest.approx(0.07)
  assert c.own_s == pytest.approx(1.2) and c.cpus == 2  # a name with spaces and ')' parses
  assert c.threads_s == {1: pytest.approx(2.0), 2: pytest.approx(0.5)}


def test_a_stat_of_many_cpus_is_read_whole_up_to_its_bound(tmp_path):
  # 3,000 CPUs: /proc/stat far past one read's chunk; every CPU line counts, the bound holds.
  write_proc(tmp_path, 300, 100, 50, 0, 10, {1: 0})
  cpus = "".join(f"cpu{i} 1 0 1 1 0 0 0 0 0 0\n" for i in range(3000))
  (tmp_path / "stat").write_text("cpu  300 0 100 50 0 0 0 0 0 0\n" + cpus + "intr 5\n")
  assert interference.read_counters(str(tmp_path), tick=TICK).cpus == 3000
  assert len(interference._read_long(str(tmp_path / "stat"), limit=70_000)) == 70_000


def test_thread_without_schedstat_uses_its_stat_ticks(tmp_path):
  write_proc(tmp_path, 1, 1, 1, 0, 10, {1: 0})
  task = tmp_path / "self" / "task" / "9"
  os.makedirs(task)
  (task / "stat").write_text("9 (python) S " + " ".join(["0"] * 10) + " 30 20 0\n")
  assert interference.read_counters(str(tmp_path), tick=TICK).threads_s[9] == pytest.approx(0.5)


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_no_proc_gives_none_and_null_shares(tmp_path, broken):
  if broken == "garbage":
    (tmp_path / "stat").write_text("not a stat file")
  assert interference.read_counters(str(tmp_path)) is None
  meter = Meter(read=lambda: interference.read_counters(str(tmp_path)))
  assert not meter.available and meter.read() is None and meter.cool_down("x") == 0.0
  assert Meter(read=lambda: None, running=lambda: {7}).cool_down() == 0.0
  meter.record("a", meter.read(), meter.read(), 1.0)
  assert meter.shares("a") == dict.fromkeys(interference.SOURCES)
  assert interference.run_totals([], "none", cpus=None)["other_processes"] is None


def _counters(busy, steal, own, threads):
  return Counters(busy, steal, own, threads, cpus=2)


def test_shares_from_known_counters():
  # 1 s block on 2 CPUs (2 CPU-seconds). The machine was busy 1.5 s, 0.9 s of it this process's:
  # 0.6 s other processes. Thread 7 (another engine's) ran 0.2 s, thread 5 (this engine's) and
  # the main thread 1 do not count. Steal 0.1 s.
  before = _counters(10.0, 1.0, 3.0, {1: 0.0, 5: 0.0, 7: 0.0})
  after = _counters(11.5, 1.1, 3.9, {1: 0.5, 5: 0.2, 7: 0.2, 8: 0.0})
  tally = interference.difference(before, after, 1.0, own_threads={5}, main_thread=1)
  assert tally.shares() == {"other_processes": pytest.approx(0.3),
                            "other_engines": pytest.approx(0.1), "steal": pytest.approx(0.05)}


def test_a_new_thread_counts_from_zero_and_shares_sum_over_blocks():
  a = _counters(0.0, 0.0, 0.0, {1: 0.0})
  b = _counters(0.5, 0.0, 0.5, {1: 0.3, 9: 0.2})  # thread 9 appeared during the block
  tally = interference.difference(a, b, 0.5, own_threads=(), main_thread=1)
  assert tally.other_engines_s == pytest.approx(0.2) and tally.other_processes_s == 0.0
  total = Tally()
  total.add(tally)
  total.add(interference.difference(b, b, 1.5, (), 1))  # an idle block dilutes the share
  assert total.shares()["other_engines"] == pytest.approx(0.2 / (2.0 * 2))


def test_tick_noise_sums_with_its_sign_and_a_row_shows_only_what_it_resolves():
  # Ten 1 ms blocks on a quiet machine: the machine's busy ticks land on some blocks and not on
  # others (+9 ms, -1 ms), this process's exact time does not. A floor at zero per block made
  # that 9 ms of other processes (45% of the 2 CPUs' 20 ms); the signed sum is 0.
  tick, t, own = 0.01, 0.0, 0.0
  tally = Tally()
  for i in range(10):
    busy = 0.01 if i == 3 else 0.0
    before = Counters(t, 0.0, own, {}, cpus=2, tick_s=tick)
    after = Counters(t + busy, 0.0, own + 0.001, {}, cpus=2, tick_s=tick)
    tally.add(interference.difference(before, after, 0.001, ()))
    t, own = t + busy, own + 0.001
  assert tally.other_processes_s == pytest.approx(0.0, abs=1e-12)
  assert tally.shares()["other_processes"] == 0.0
  # A hog's full core over ten 100 ms blocks (1 s of wall on 2 CPUs: half the machine's time)
  # shows, less twice the noise of ten blocks' ticks.
  hog = Tally()
  for _ in range(10):
    hog.add(interference.difference(Counters(0.0, 0.0, 0.0, {}, 2, tick),
                                    Counters(0.2, 0.0, 0.1, {}, 2, tick), 0.1, ()))
  floor = interference.RESOLVE_SIGMAS * interference.TICK_NOISE * tick * np.sqrt(10)
  assert hog.shares()["other_processes"] == pytest.approx((1.0 - floor) / 2.0)
  assert 0.45 < hog.shares()["other_processes"] < 0.5


class FakeReadings:
  """Counters that move by a given amount each time they are read."""

  def __init__(self, steps):
    self.steps, self.now, self.reads = steps, {}, 0

  def __call__(self):
    step = self.steps(self.reads)
    self.reads += 1
    for tid, dt in step.items():
      self.now[tid] = self.now.get(tid, 0.0) + dt
    return _counters(0.0, 0.0, 0.0, dict(self.now))


def test_learn_takes_the_threads_that_ran_during_the_warm_up():
  # Read 0 is the meter's own probe, 1 the "before", 2 the "after".
  readings = FakeReadings(lambda i: {1: 0.01, 4: 0.01 if i == 2 else 0.0, 6: 1e-6})
  names = {1: "python", 4: "python", 6: "python", 7: "python"}
  meter = Meter(read=readings, main_thread=1, names=lambda: names)
  before = meter.read()
  meter.learn("numpy", before, meter.read())
  assert meter.threads["numpy"] == {1, 4}  # thread 6's microsecond is below ACTIVE_S


def test_learn_takes_the_whole_named_pool_of_a_thread_that_ran():
  readings = FakeReadings(lambda i: {1: 0.01, 4: 0.01 if i == 2 else 0.0})
  names = {1: "python", 4: "tf_XLAEigen", 5: "tf_XLAEigen", 6: "python", 7: "llvm-worker-0"}
  meter = Meter(read=readings, main_thread=1, names=lambda: names)
  before = meter.read()
  meter.learn("eager", before, meter.read())
  assert meter.threads["eager"] == {1, 4, 5}  # 6 shares only the process's own name


def test_thread_names_from_fake_proc(tmp_path):
  os.makedirs(tmp_path / "self" / "task" / "3")
  (tmp_path / "self" / "task" / "3" / "comm").write_text("tf_XLAEigen\n")
  assert interference.thread_names(str(tmp_path)) == {3: "tf_XLAEigen"}
  assert interference.thread_names(str(tmp_path / "none")) == {}


def test_cool_down_waits_until_no_other_thread_is_runnable_then_gives_up_at_max():
  now = [0.0]
  states = iter([{1, 4}, {1, 4}, {1}, {1, 4}, {1}, {1}, {1}])  # thread 4 spins, then sleeps

  def running():
    return next(states, {1})

  meter = Meter(read=lambda: _counters(0, 0, 0, {}), clock=lambda: now[0],
                sleep=lambda s: now.__setitem__(0, now[0] + s), main_thread=1, running=running)
  meter.threads["jit"] = {1}
  waited = meter.cool_down("jit", quiet_polls=2, poll_s=0.001)
  assert waited == pytest.approx(0.005)  # polls: busy, busy, quiet, busy, quiet, quiet
  meter.threads["numpy"] = {4}
  states = iter([{1, 4}] * 1000)
  assert meter.cool_down("numpy", 2, poll_s=0.001) == pytest.approx(0.001)  # its own thread
  assert meter.cool_down("jit", 2, poll_s=0.001, max_s=0.05) == pytest.approx(0.05)


def test_running_threads_reads_each_threads_state(tmp_path):
  write_proc(tmp_path, 1, 1, 1, 0, 10, {})
  for tid, state in ((3, "R"), (4, "S"), (5, "R")):
    os.makedirs(tmp_path / "self" / "task" / str(tid))
    (tmp_path / "self" / "task" / str(tid) / "stat").write_text(
        f"{tid} (a (b) c) {state} " + " ".join(["0"] * 20) + "\n")
  assert interference.running_threads(str(tmp_path)) == {3, 5}
  assert interference.running_threads(str(tmp_path / "none")) is None


def test_note_names_the_worst_source_above_a_tenth_of_a_core():
  rows = [{"engine": "numpy", "workload": "abs_loss", "shape": [1000],
           "interference": {"other_processes": 0.04, "other_engines": 0.0, "steal": 0.0}},
          {"engine": "jit", "workload": "abs_loss", "shape": [1000],
           "interference": {"other_processes": 0.01, "other_engines": 0.30, "steal": 0.0}},
          {"engine": "x", "workload": "y", "shape": [1], "interference": None}]
  note = interference.note(rows, cpus=2)
  assert note.startswith("note: busy machine: up to 0.60 of a core went to other_engines")
  assert "jit's blocks of abs_loss 1000" in note
  assert interference.note(rows[:1], cpus=2) is None  # 0.08 of a core: below the line
  assert interference.note(rows, cpus=None) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_a_cpu_burning_child_shows_up_in_other_processes():
  meter = Meter()
  hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
  try:
    time.sleep(0.3)  # the child is running
    for _ in range(5):
      before, start = meter.read(), time.perf_counter()
      time.sleep(0.1)  # a "block" that leaves the CPUs to whoever wants them
      meter.record("sleepy", before, meter.read(), time.perf_counter() - start)
  finally:
    hog.kill()
    hog.wait()
  shares = meter.shares("sleepy")
  cpus = meter.total().cpus
  # One busy core of `cpus` (others may be busier still; steal takes its share from the hog).
  assert shares["other_processes"] + shares["steal"] >= 0.6 / cpus, shares
  assert shares["other_engines"] < 0.05


def test_run_totals_weight_rows_by_their_timed_time():
  class Row:
    def __init__(self, shares, blocks, calls):
      self.interference, self.block_times_s, self.calls_per_block = shares, blocks, calls

  busy = {"other_processes": 0.5, "other_engines": 0.1, "steal": 0.0}
  quiet = {"other_processes": 0.0, "other_engines": 0.0, "steal": 0.0}
  rows = [Row(busy, [0.1, 0.1], 5), Row(quiet, [0.3], 10), Row(None, [1.0], 1)]  # 1 s and 3 s
  totals = interference.run_totals(rows, "cooldown", cpus=2)
  assert totals == {"other_processes": pytest.approx(0.125), "other_engines": pytest.approx(0.025),
                    "steal": 0.0, "cpus": 2, "isolation": "cooldown"}


def test_a_thread_the_block_woke_becomes_the_engines_and_only_running_ones_count():
  # Thread 4 (numpy's pool) is still spinning when jit's block begins: it counts. Thread 8 (one
  # of JAX's, missed by the warm-up) was asleep and ran during the block: jit woke it, so it
  # does not count, and it is jit's from now on.
  readings = FakeReadings(lambda i: {1: 0.01, 4: 0.05, 8: 0.02} if i else {})
  meter = Meter(read=readings, main_thread=1, running=lambda: {1, 4},
                names=lambda: {1: "compare", 4: "compare", 8: "compare"})
  meter.threads["jit"] = {1}
  meter.begin("jit")
  before = meter.read()
  tally = meter.record("jit", before, meter.read(), 1.0)
  assert tally.other_engines_s == pytest.approx(0.05)
  assert meter.threads["jit"] == {1, 8}
  # Without begin (no running snapshot) every foreign thread counts, as before.
  before = meter.read()
  assert meter.record("jit", before, meter.read(), 1.0).other_engines_s == pytest.approx(0.05)


def test_begin_right_after_a_quiet_cool_down_takes_its_last_poll():
  polls = []

  def running():
    polls.append(1)
    return {1, 4} if len(polls) == 1 else {1}  # thread 4 spins once, then sleeps

  meter = Meter(read=lambda: _counters(0, 0, 0, {}), sleep=lambda s: None, main_thread=1,
                running=running)
  meter.cool_down("jit", quiet_polls=2)
  meter.begin("jit")
  assert len(polls) == 3 and meter._running_at_start["jit"] == set()  # no fourth look
  meter.cool_down("jit", quiet_polls=2)
  meter.read()  # anything between: the poll is stale, begin looks again
  meter.begin("jit")
  assert len(polls) == 6
  meter.cool_down("jit", quiet_polls=2)
  meter.begin("numpy")  # another engine's block: its own look
  assert len(polls) == 9


def test_begin_without_proc_states_counts_every_foreign_thread():
  readings = FakeReadings(lambda i: {1: 0.01, 4: 0.05} if i else {})
  meter = Meter(read=readings, main_thread=1, running=lambda: None, names=lambda: {})
  meter.begin("jit")
  before = meter.read()
  assert meter.record("jit", before, meter.read(), 1.0).other_engines_s == pytest.approx(0.05)
  assert meter.threads["jit"] == set()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_real_threads_a_spinning_pool_counts_and_a_thread_the_block_wakes_does_not():
  """Real threads, real /proc: a thread already spinning when a block begins is another
  engine's; one the block itself wakes (an Event it sets) becomes the engine's."""
  stop, go = threading.Event(), threading.Event()

  def busy():  # NumPy releases the GIL while it computes: the thread stays runnable
    x = np.ones(1 << 20)
    while not stop.is_set():
      np.sin(x, out=x)

  def woken():
    go.wait()
    busy()

  meter = Meter()
  meter.threads["engine"] = set()
  spinner = threading.Thread(target=busy, daemon=True)
  spinner.start()
  worker = threading.Thread(target=woken, daemon=True)
  worker.start()
  try:
    time.sleep(0.05)  # the spinner is running, the worker asleep on its Event
    meter.begin("engine")
    before, start = meter.read(), time.perf_counter()
    go.set()  # the block's own work wakes the worker ...
    time.sleep(0.2)  # ... and leaves the CPUs to both threads
    tally = meter.record("engine", before, meter.read(), time.perf_counter() - start)
  finally:
    stop.set()
    go.set()
    spinner.join()
    worker.join()
  assert tally.other_engines_s > 0.02, tally  # the spinner's CPU time during the block
  assert worker.native_id in meter.threads["engine"]
  assert spinner.native_id not in meter.threads["engine"]
