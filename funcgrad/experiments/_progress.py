"""A sweep's progress on stderr: a tqdm bar on a terminal, one line per finished row otherwise.

On a terminal the bar names the row being measured and what the runner is doing with it
(compiling and checking an engine, or timing a case), and each finished row prints above it. On
anything else (a pipe, a file, CI) there is no bar: a line says what is being done whenever that
changes (`... timing cpu abs_loss 12`), and one line per finished row, e.g.
`[6/6] cpu abs_loss 12 jit: 9.8 us (0 left)`, which scripts and tests read. `announce`, first
thing in a script's main, says what the run does before its first row (imports and the copy
bandwidth take seconds). With --noprogress, none of these.

This module defines no flags itself (absl flag names are global): each sweeping script calls
`define_progress_flag` once.
"""

import sys
from typing import TextIO

import tqdm
from absl import flags

from funcgrad.bench import report
from funcgrad.bench.runner import OK, Result

# What the runner says it is doing -> what the bar says.
_DOING = {"preparing": "compiling and checking", "timing": "timing"}
DOING_PREFIX = "... "


def announce(what: str, enabled: bool, stream: TextIO | None = None) -> None:
  """Says what the run is about to do.

  Call it first thing in main, after the restart under --allocator (the launchers do that one
  before the script's imports): a piped run then says something within the first seconds, not
  only when its first row is measured.
  """
  if not enabled:
    return
  print(f"{DOING_PREFIX}{what}", file=sys.stderr if stream is None else stream, flush=True)


def define_progress_flag() -> flags.FlagHolder[bool]:
  """`--progress`, for the scripts that sweep (each defines it once, by calling this)."""
  return flags.DEFINE_bool(
      "progress", True, "Progress on stderr: on a terminal a bar naming the row being measured "
      "and what is being done (compiling and checking, timing), else one line per finished row; "
      "--noprogress shows neither.", module_name=sys.argv[0])


def row_label(result: Result) -> str:
  """'cpu abs_loss 12 jit': the backend, workload, shape and engine of a row."""
  return f"{result.backend} {result.workload} {report.shape_label(result.shape)} {result.engine}"


def row_line(result: Result, index: int, total: int) -> str:
  """'[6/6] cpu abs_loss 12 jit: 9.8 us (0 left)': a finished row and how many remain."""
  outcome = (report.format_seconds(result.median_s) if result.status == OK
             else f"{report.status_label(result)}: {result.error}")
  return f"[{index}/{total}] {row_label(result)}: {outcome} ({total - index} left)"


def _is_terminal(stream: TextIO) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):  # no isatty, or closed
    return False


class Progress:
  """What a sweep is doing: `start(total)`, `update(what, row_label)` as work starts,
  `done(result_line)` as each row finishes, `close()` at the end (also after an error)."""

  def __init__(self, enabled: bool = True, stream: TextIO | None = None):
    self._stream = sys.stderr if stream is None else stream
    self._enabled = enabled
    self._bar: tqdm.tqdm | None = None
    self._said = ""

  def start(self, total: int) -> None:
    """Shows the bar (on a terminal, when enabled) for `total` rows."""
    if self._enabled and _is_terminal(self._stream):
      self._bar = tqdm.tqdm(total=total, file=self._stream, unit="row", dynamic_ncols=True,
                            leave=False)

  def update(self, what: str, row_label: str) -> None:
    """Names what is being done ('preparing', 'timing') and to which row, on the bar."""
    doing = f"{_DOING.get(what, what)} {row_label}"
    if self._bar is not None:
      self._bar.set_description_str(doing)
    elif self._enabled and doing != self._said:
      self._said = doing
      print(f"{DOING_PREFIX}{doing}", file=self._stream, flush=True)

  def done(self, result_line: str) -> None:
    """A finished row: printed above the bar, or as a line of its own without one."""
    if self._bar is not None:
      self._bar.write(result_line, file=self._stream)
      self._bar.update(1)
    elif self._enabled:
      print(result_line, file=self._stream, flush=True)

  def close(self) -> None:
    """Removes the bar; the printed rows stay."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def runner_progress(self, what: str, row: Result) -> None:
    """For `runner.run_sweep(progress=...)`: an engine is prepared, or a case is timed (every
    engine of it, in interleaved rounds). Off a terminal, one line per case and stage."""
    case = f"{row.backend} {row.workload} {report.shape_label(row.shape)}"
    label = row_label(row) if what == "preparing" and self._bar is not None else case
    self.update(what, label)
