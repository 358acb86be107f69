"""Sweep progress: a bar on a terminal, a line per row otherwise, nothing with --noprogress."""

import io
import re

import numpy as np
import pytest

from funcgrad.bench import engines, runner, workloads
from funcgrad.bench.case import Sweep, Timing, rows
from funcgrad.experiments import _progress
from tests.cli import run_in_process

QUICK = ["--min_run_time=0.01", "--sizes=3x4", "--workloads=muladd_sum", "--engines=numpy,jit"]
ROW_LINE = re.compile(r"^\[\d+/\d+\] ")
DOING_LINE = re.compile(r"^\.\.\. (compare: |crossover: |compiling and checking |timing )")


class Terminal(io.StringIO):
  """What tqdm writes to a terminal, kept."""

  def isatty(self):
    return True


def _sweep(progress):
  cases = Sweep(
      workloads=[workloads.get_workload("muladd_sum")],
      engines=[engines.get_engine("numpy"), engines.get_engine("jit")], backends=["cpu"],
      sizes=[(3, 4)], dtype=np.dtype(np.float32), timing=Timing(min_run_time=0.01)).cases()
  progress.start(rows(cases))
  try:
    runner.run_sweep(cases, lambda r, i, n: progress.done(_progress.row_line(r, i, n)),
                     rooflines={}, progress=progress.runner_progress)
  finally:
    progress.close()


def test_on_a_terminal_the_bar_names_the_row_and_what_is_done():
  terminal = Terminal()
  _sweep(_progress.Progress(stream=terminal))
  shown = terminal.getvalue()
  for doing in ("compiling and checking cpu muladd_sum 3x4 numpy",
                "compiling and checking cpu muladd_sum 3x4 jit", "timing cpu muladd_sum 3x4"):
    assert doing in shown, shown
  assert "2/2" in shown  # the bar counted both rows
  assert "[1/2] cpu muladd_sum 3x4 numpy: " in shown  # finished rows print above the bar
  assert "[2/2] cpu muladd_sum 3x4 jit: " in shown


def test_off_a_terminal_a_line_per_stage_and_per_row_and_no_bar():
  pipe = io.StringIO()
  _sweep(_progress.Progress(stream=pipe))
  lines = pipe.getvalue().splitlines()
  assert [line.split(":")[0] for line in lines] == [
      "... compiling and checking cpu muladd_sum 3x4", "... timing cpu muladd_sum 3x4",
      "[1/2] cpu muladd_sum 3x4 numpy", "[2/2] cpu muladd_sum 3x4 jit"]
  assert lines[-1].endswith("(0 left)")
  assert "\r" not in pipe.getvalue()


def test_announce_says_what_the_run_does():
  pipe = io.StringIO()
  _progress.announce("compare: the plan", True, pipe)
  assert pipe.getvalue() == "... compare: the plan\n"
  _progress.announce("compare: the plan", False, pipe)  # --noprogress
  assert pipe.getvalue() == "... compare: the plan\n"


def test_disabled_progress_prints_nothing_even_on_a_terminal():
  terminal = Terminal()
  _sweep(_progress.Progress(enabled=False, stream=terminal))
  assert terminal.getvalue() == ""


@pytest.mark.slow
def test_compare_prints_row_lines_off_a_terminal_and_nothing_with_noprogress():
  shown = run_in_process("experiments.compare", *QUICK)
  assert shown.returncode == 0, shown.stderr
  lines = [line for line in shown.stderr.splitlines() if line.strip()]
  assert all(ROW_LINE.match(line) or DOING_LINE.match(line) for line in lines), shown.stderr
  assert lines[0].startswith("... compare: ")  # said first, before the imports and the peak
  assert "[2/2] cpu muladd_sum 3x4 jit: " in shown.stderr
  quiet = run_in_process("experiments.compare", *QUICK, "--noprogress")
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stderr == ""
  assert "[ muladd_sum on cpu (float32)" in quiet.stdout  # the table is still printed


@pytest.mark.slow
def test_crossover_prints_row_lines_off_a_terminal_and_nothing_with_noprogress():
  args = ["--max_elements=64", "--min_run_time=0.01"]
  shown = run_in_process("experiments.crossover", *args)
  assert shown.returncode == 0, shown.stderr
  lines = [line for line in shown.stderr.splitlines() if line.strip()]
  assert lines[0].startswith("... crossover: ")
  assert all(DOING_LINE.match(line) for line in lines if not ROW_LINE.match(line)), shown.stderr
  lines = [line for line in lines if ROW_LINE.match(line)]
  total = int(lines[0].split("/")[1].split("]")[0])
  assert len(lines) == total and lines[-1].startswith(f"[{total}/{total}] ")
  quiet = run_in_process("experiments.crossover", *args, "--noprogress")
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stderr == ""
