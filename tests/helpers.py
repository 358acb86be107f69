"""Helpers shared by tests: running experiments as real subprocesses."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, timeout: float = 240,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  """Runs `python -m module args...` from the repository root and captures its output."""
  return subprocess.run(
      [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
      timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def assert_one_line_error(result, *fragments: str) -> None:
  """A bad input: non-zero exit, no traceback, one `error:` line naming every fragment.

  `result`: a `subprocess.CompletedProcess`, or a `tests.cli.Outcome` of an in-process run.
  """
  assert result.returncode != 0, result.stdout
  assert "Traceback" not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr
  for fragment in fragments:
    assert fragment in errors[0], errors[0]


def quick_first(*values):
  """Parameter values of which the quick subset (`-m "not slow"`) runs the first and the full
  suite every one: the others check the same path on more inputs. A tuple is one case's values."""
  return [v if i == 0 else pytest.param(*(v if isinstance(v, tuple) else (v,)),
                                        marks=pytest.mark.slow)
          for i, v in enumerate(values)]
