"""Hostile battery, round two: outputs that survive links, partial lines, full disks and signals.

An output is never opened through a symbolic link another user planted; a JSONL row never joins
a partial last line; a full disk is one line, no half row, and the other outputs and the printed
tables still come; JSON is strict (NaN and infinities are null, the row saying why); Ctrl-C,
SIGTERM and SIGHUP write every finished row to every requested output (JSON marked
`"complete": false`), print one line, and exit 130, 143 and 129. Signals and full disks need
real processes or a mount (root); the rest runs in this process.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from funcgrad import outputs
from funcgrad.errors import UsageError
from tests.cli import run_in_process
from tests.helpers import ROOT
from tests.test_hostile import assert_refused

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a full tmpfs; runs "
                               "where the tests run as root")
QUICK = ("--engines=numpy,jit", "--sizes=3x4", "--min_run_time=0.01", "--workloads=muladd_sum",
         "--noprogress")


def _strict_load(path):
  def refuse(name):
    raise ValueError(f"non-strict JSON constant {name}")

  with open(path, encoding="utf-8") as f:
    return json.load(f, parse_constant=refuse)


# Class: links planted by another user.
def test_jsonl_through_a_planted_symlink_is_refused_and_the_target_untouched(tmp_path):
  victim = tmp_path / "victim"
  victim.write_text("private\n")
  victim.chmod(0o600)
  (tmp_path / "shared.jsonl").symlink_to(victim)
  outcome = run_in_process("experiments.compare", *QUICK,
                           f"--output_jsonl={tmp_path}/shared.jsonl")
  assert_refused(outcome, "--output_jsonl=", "symbolic link", limit_s=10.0)
  assert victim.read_text() == "private\n"


@pytest.mark.parametrize("flag", ["--output_json", "--output_csv"])
def test_json_and_csv_replace_a_planted_symlink_not_its_target(tmp_path, flag):
  victim = tmp_path / "victim"
  victim.write_text("private\n")
  link = tmp_path / "out"
  link.symlink_to(victim)
  outcome = run_in_process("experiments.compare", *QUICK, f"{flag}={link}")
  assert outcome.returncode == 0, outcome.stderr
  assert victim.read_text() == "private\n"
  assert not link.is_symlink() and link.stat().st_size > 0


# Class: JSONL rows always start on a new line; a full disk cuts no row in half.
def test_a_row_after_a_partial_last_line_starts_a_new_line(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text('{"a": 1}\n{"half": ')
  outcome = run_in_process("experiments.compare", *QUICK, f"--output_jsonl={path}")
  assert outcome.returncode == 0, outcome.stderr
  lines = path.read_text().splitlines()
  assert lines[:2] == ['{"a": 1}', '{"half": ']
  rows = [json.loads(line) for line in lines[2:]]
  assert [r["engine"] for r in rows] == ["numpy", "jit"]


def test_jsonl_file_writes_whole_strict_rows(tmp_path):
  writer = outputs.JsonlFile(str(tmp_path / "r.jsonl"))
  writer.write({"median_s": math.nan, "times": [1.0, math.inf]})
  writer.close()
  (row,) = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
  assert row == {"median_s": None, "times": [1.0, None],
                 "non_finite": {"median_s": "nan", "times": "inf"}}


def _fill(path):
  fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
  try:
    while True:
      os.write(fd, b"\0" * 1024)
  except OSError:
    pass
  finally:
    os.close(fd)


@pytest.fixture
def full_disk(tmp_path):
  """A 64 KiB tmpfs that is already full."""
  path = tmp_path / "full"
  path.mkdir()
  subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
  _fill(path / "filler")
  yield path
  subprocess.run(["umount", "-l", str(path)], check=False)


@ROOT_ONLY
def test_jsonl_on_a_full_disk_is_one_line_and_no_half_row(tmp_path, full_disk):
  (full_disk / "filler").unlink()
  path = full_disk / "rows.jsonl"
  writer = outputs.JsonlFile(str(path))
  writer.write({"i": 0})
  _fill(full_disk / "filler")  # fill what is left
  with pytest.raises(UsageError, match="cannot append row 2.*keeps 1 whole rows"):
    writer.write({"i": 1, "pad": "x" * 100_000})
  writer.close()
  assert path.read_text() == '{"i": 0}\n'


@ROOT_ONLY
def test_json_on_a_full_disk_keeps_the_csv_and_the_tables(tmp_path, full_disk):
  csv = tmp_path / "r.csv"
  outcome = run_in_process("experiments.compare", *QUICK, f"--output_json={full_disk}/r.json",
                           f"--output_csv={csv}")
  assert_refused(outcome, "--output_json", "No space left", code=1, limit_s=30.0)
  assert csv.read_text().count("\n") == 3  # header + numpy + jit
  assert "median per call" in outcome.stdout  # the tables were printed
  assert not [p for p in full_disk.iterdir() if p.name != "filler"]  # no temporary file


@ROOT_ONLY
def test_jsonl_on_a_full_disk_through_the_cli_is_one_line(tmp_path, full_disk):
  outcome = run_in_process("experiments.compare", *QUICK, f"--output_jsonl={full_disk}/r.jsonl",
                           f"--output_json={tmp_path}/r.json")
  assert_refused(outcome, "--output_jsonl", "No space left", code=1, limit_s=30.0)
  assert len(_strict_load(tmp_path / "r.json")["results"]) == 2  # the JSON still has both rows
  assert (full_disk / "r.jsonl").read_bytes() == b""


def test_one_failed_output_does_not_stop_the_others(tmp_path):
  def broken(rows, complete):
    raise OSError("disk on fire")

  run = outputs.RunOutputs({"--output_json": (str(tmp_path / "a.json"), broken),
                            "--output_csv": (str(tmp_path / "b.csv"),
                                             lambda rows, complete: f"{len(rows)} {complete}\n")},
                           to_row=dict)
  run.add({"x": 1})
  assert run.finish() == [str(tmp_path / "b.csv")]
  assert (tmp_path / "b.csv").read_text() == "1 True\n"
  assert len(run.failures) == 1 and "--output_json" in run.failures[0]


# Class: strict JSON.
def test_strict_json_turns_non_finite_numbers_into_nulls_with_a_reason():
  document = {"results": [{"median_s": math.inf, "error": None, "block_times_s": [math.nan, 1.0]},
                          {"median_s": 1.0}], "machine": {"bandwidth": -math.inf}}
  parsed = json.loads(outputs.dumps(document), parse_constant=lambda name: 1 / 0)
  assert parsed["results"][0] == {"median_s": None, "error": None, "block_times_s": [None, 1.0],
                                  "non_finite": {"median_s": "inf", "block_times_s": "nan"}}
  assert parsed["results"][1] == {"median_s": 1.0}
  assert parsed["machine"] == {"bandwidth": None, "non_finite": {"bandwidth": "-inf"}}


def test_a_function_returning_nan_writes_strict_json(tmp_path, monkeypatch):
  (tmp_path / "nanfn.py").write_text("import jax.numpy as jnp\n"
                                     "def f(x):\n  return jnp.sum(x) * jnp.nan\n")
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  try:
    outcome = run_in_process("experiments.compare", "--function=nanfn:f", "--shapes=3",
                             "--engines=eager,jit", "--min_run_time=0.01", "--noprogress",
                             f"--output_json={tmp_path}/r.json",
                             f"--output_jsonl={tmp_path}/r.jsonl")
  finally:
    sys.modules.pop("nanfn", None)
  assert outcome.returncode in (0, 1), outcome.stderr
  text = (tmp_path / "r.json").read_text() + (tmp_path / "r.jsonl").read_text()
  assert "NaN" not in text and "Infinity" not in text
  _strict_load(tmp_path / "r.json")


# Class: Ctrl-C, SIGTERM and SIGHUP keep every finished row (real processes).
def _start(*outputs_flags):
  """A 24-row sweep (12 cases of 2 engines, ~0.5 s each): seconds left when its first rows end."""
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.compare", "--workloads=muladd_sum,abs_loss",
       "--engines=numpy,eager", "--sizes=3x4,6x8,12x16,24x32,48x64,96x128", "--min_run_time=0.2",
       "--progress", "--allocator=system", *outputs_flags], cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _after_rows(job, rows, timeout=90):
  """Reads the progress lines until `rows` rows finished; returns what was read."""
  seen, deadline = [], time.monotonic() + timeout
  while time.monotonic() < deadline:
    line = job.stderr.readline()
    if not line:
      break
    seen.append(line)
    if sum(ln.startswith("[") for ln in seen) >= rows:
      return seen
  raise AssertionError("".join(seen))


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                          (signal.SIGHUP, 129)], ids=["INT", "TERM", "HUP"])
def test_a_signal_keeps_every_finished_row_in_every_output(tmp_path, signum, code):
  paths = {f: tmp_path / f"r.{f.rsplit('_', 1)[1]}"
           for f in ("--output_json", "--output_csv", "--output_jsonl")}
  job = _start(*(f"{f}={p}" for f, p in paths.items()))
  _after_rows(job, 2)
  job.send_signal(signum)
  _, rest = job.communicate(timeout=60)
  errors = [ln for ln in rest.splitlines() if ln.startswith("error:")]
  assert job.returncode == code, rest
  assert "Traceback" not in rest and len(errors) == 1, rest
  assert "interrupted" in errors[0] and "finished row" in errors[0], errors
  document = _strict_load(paths["--output_json"])
  assert document["complete"] is False
  rows = len(document["results"])
  assert rows >= 2
  assert len(paths["--output_jsonl"].read_text().splitlines()) == rows
  assert paths["--output_csv"].read_text().count("\n") == rows + 1
  assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_ctrl_c_with_only_output_json_keeps_the_rows(tmp_path):
  path = tmp_path / "r.json"
  job = _start(f"--output_json={path}")
  _after_rows(job, 1)
  job.send_signal(signal.SIGINT)
  _, rest = job.communicate(timeout=60)
  assert job.returncode == 130, rest
  assert "nothing was written" not in rest
  document = _strict_load(path)
  assert document["complete"] is False and len(document["results"]) >= 1


@pytest.mark.slow
def test_ctrl_c_landing_in_a_gc_callback_is_not_swallowed(tmp_path):
  """A signal whose exception a gc callback would swallow is delivered again after it."""
  (tmp_path / "gcfn.py").write_text(
      "import gc, os, signal\nimport jax.numpy as jnp\n"
      "def _kill(phase, info):\n"
      "  if phase == 'start' and not getattr(_kill, 'done', False) and _kill.armed:\n"
      "    _kill.done = True\n    os.kill(os.getpid(), signal.SIGINT)\n"
      "_kill.armed = False\ngc.callbacks.insert(0, _kill)\n"
      "def f(x):\n  _kill.armed = True\n  gc.collect()\n  return jnp.sum(x * x)\n")
  env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
  job = subprocess.run([sys.executable, "-m", "experiments.compare", "--function=gcfn:f",
                        "--shapes=3", "--engines=eager", "--min_run_time=0.05",
                        "--allocator=system", f"--output_json={tmp_path}/r.json"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120, check=False)
  assert job.returncode == 130, job.stderr[-2000:]  # not swallowed: exit 0 before
  assert "Traceback" not in job.stderr
  if (tmp_path / "r.json").exists():  # rows had finished when it landed
    assert _strict_load(tmp_path / "r.json")["complete"] is False


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, delay", [(signal.SIGINT, 130, 0.4),
                                                 (signal.SIGTERM, 143, 0.9),
                                                 (signal.SIGHUP, 129, 1.4)],
                         ids=["INT", "TERM", "HUP"])
def test_a_signal_while_importing_is_one_line(tmp_path, signum, code, delay):
  job = subprocess.Popen([sys.executable, "-m", "experiments.compare", *QUICK,
                          f"--output_json={tmp_path}/r.json"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  time.sleep(delay)
  job.send_signal(signum)
  _, stderr = job.communicate(timeout=60)
  assert job.returncode in (code, 0), stderr  # 0: it finished first (a fast machine)
  if job.returncode:
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert [ln for ln in stderr.splitlines() if ln.startswith("error:")] == [
        ln for ln in stderr.splitlines() if "interrupted" in ln]


@pytest.mark.slow
def test_sigterm_during_optimize_writes_its_json_marked_incomplete(tmp_path):
  # The loops of a fit are one case of the runner: their rows finish together, at its end. A
  # SIGTERM while they are prepared or timed still writes the JSON, marked incomplete.
  path = tmp_path / "fit.json"
  job = subprocess.Popen([sys.executable, "-m", "experiments.optimize", "--loops=scan,numpy",
                          "--steps=300", "--min_run_time=60", "--allocator=system",
                          f"--output_json={path}"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
  try:
    said = []  # what the run says it is doing, up to its timing (60 s of rounds)
    while not said or not (said[-1].startswith("... timing") or job.poll() is not None):
      said.append(job.stderr.readline())
    job.send_signal(signal.SIGTERM)
    _, rest = job.communicate(timeout=60)
  finally:
    job.kill()
  assert said[0].startswith("... optimize: ") and said[-1].startswith("... timing every loop")
  assert "... compiling and checking the scan loop's fit\n" in said, said
  assert job.returncode == 143, rest
  assert "Traceback" not in rest and "kept 0 finished rows" in rest, rest
  document = _strict_load(path)
  assert document["complete"] is False and document["results"] == []
