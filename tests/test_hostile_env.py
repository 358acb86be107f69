"""Hostile battery, round two: the environment and the command line.

A missing or unknown platform in `JAX_PLATFORMS`, bad `XLA_FLAGS`, an inherited allocator mark,
flags given twice, `--help`, a closed pipe, a `--function` that exits or raises BaseException,
huge and control-character-laden input: each one `error:` line naming the variable or flag and
the allowed form, the right exit status, no traceback, within the time limit. Cases that end
before JAX starts run in this process (`tests.cli`); a closed pipe needs a real process.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from funcgrad import allocator, devices
from funcgrad.errors import UsageError
from funcgrad.experiments import SCRIPTS
from tests.cli import run_in_process
from tests.helpers import ROOT
from tests.test_hostile import assert_refused

# Class: a platform the machine does not have, in every script (issue 22: 13 gave tracebacks).
CUDA_MISSING = not any("cuda" in p for p in devices.known_platforms())


@pytest.mark.skipif(not CUDA_MISSING, reason="JAX's CUDA plugin is installed here")
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_jax_platforms_cuda_without_cuda_is_one_line_in_every_script(monkeypatch, script):
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  args = {"run_exported": ["--in=x.fgx"], "export_graph": ["--out=x.fgx"]}.get(script, [])
  assert_refused(run_in_process(f"experiments.{script}", *args), "JAX_PLATFORMS='cuda'",
                 "not installed", "set it to one of cpu", limit_s=5.0)


@pytest.mark.parametrize("value, fragment", [("bogus", "'bogus', not a platform JAX knows"),
                                             ("cpu,metal9", "'metal9'")])
def test_jax_platforms_unknown_is_one_line(monkeypatch, value, fragment):
  monkeypatch.setenv("JAX_PLATFORMS", value)
  assert_refused(run_in_process("experiments.gradients"), "JAX_PLATFORMS", fragment,
                 limit_s=5.0)


@pytest.mark.skipif(not CUDA_MISSING, reason="JAX's CUDA plugin is installed here")
def test_funcgrad_compare_with_a_missing_platform_raises_usage_error(monkeypatch):
  import funcgrad  # noqa: PLC0415

  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  with pytest.raises(UsageError, match="JAX_PLATFORMS='cuda'"):
    funcgrad.compare(lambda x: (x * x).sum(), np.ones(3, np.float32), min_run_time=0.01)


@pytest.mark.parametrize("value, fragment", [("--xla_no_such_flag=1", "--xla_no_such_flag"),
                                             ("--xla_cpu_use_thunk_runtime=maybe", "XLA_FLAGS")])
def test_bad_xla_flags_is_one_line_naming_xla_flags(monkeypatch, value, fragment):
  monkeypatch.setenv("XLA_FLAGS", value)
  monkeypatch.delenv("FUNCGRAD_XLA_FLAGS_CHECKED", raising=False)
  outcome = run_in_process("experiments.gradients")
  assert_refused(outcome, "XLA_FLAGS=", fragment, "unset XLA_FLAGS", limit_s=60.0)


def test_an_inherited_allocator_mark_is_not_a_false_restart_error(monkeypatch):
  """A parent's FUNCGRAD_ALLOCATOR_REEXEC=1 (or its pid) is not this process's restart."""
  calls = []
  monkeypatch.setenv("FUNCGRAD_ALLOCATOR_REEXEC", "1")
  monkeypatch.setattr(allocator, "in_use", lambda: "system")
  monkeypatch.setattr(allocator.os, "execve", lambda *a: calls.append(a))
  with pytest.raises(AssertionError, match="unreachable"):
    allocator.reexec_with("mimalloc" if allocator.find_library("mimalloc") else "system",
                          environ={"FUNCGRAD_TEST_SETTING": "x"})
  assert calls and calls[0][2]["FUNCGRAD_ALLOCATOR_REEXEC"] == str(os.getpid())


def test_a_restart_that_did_not_take_effect_is_still_refused(monkeypatch):
  monkeypatch.setenv("FUNCGRAD_ALLOCATOR_REEXEC", str(os.getpid()))
  monkeypatch.setattr(allocator, "in_use", lambda: "system")
  with pytest.raises(UsageError, match="still"):
    allocator.reexec_with("system", environ={"FUNCGRAD_TEST_SETTING": "x"})


# Class: every message names the flag and the allowed form; a flag given twice is warned of
# (one line naming the flag, every value and the one used: absl keeps the last, silently).
TWICE = [
    ("experiments.compare", ["--sizes=3x4", "--sizes=5x6"], ["--sizes", "--sizes=5x6, is used"]),
    ("experiments.optimize", ["--steps=5", "--steps=6"], ["--steps=5, --steps=6", "--steps=6"]),
    ("experiments.graph", ["--shape=3x4", "--shape", "5x6"], ["--shape", "2 times"]),
    ("experiments.compare", ["--interleave", "--nointerleave"], ["--nointerleave, is used"]),
    ("experiments.distributed", ["--local_processes=2", "--local_processes=3"],
     ["--local_processes=3, is used"]),
]


@pytest.mark.parametrize("module, args, fragments", TWICE, ids=lambda v: str(v)[:40])
def test_a_flag_given_twice_is_warned_of(module, args, fragments):
  outcome = run_in_process(module, *args, "--seed=-1")  # then refused: the case ends at parsing
  warnings = [ln for ln in outcome.stderr.splitlines() if ln.startswith("warning:")]
  assert len(warnings) == 1, outcome.stderr
  for fragment in fragments:
    assert fragment in warnings[0], warnings[0]
  assert_refused(outcome, "seed", limit_s=5.0)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_exits_zero(script):
  outcome = run_in_process(f"experiments.{script}", "--help")
  assert outcome.returncode == 0, (outcome.returncode, outcome.stderr[-500:])
  assert "Traceback" not in outcome.stderr
  assert "--" in outcome.stdout + outcome.stderr  # the flags are listed


def test_twenty_thousand_shapes_give_a_bounded_error_line():
  shapes = ";".join(["3"] * 20_000)
  outcome = run_in_process("experiments.compare", "--function=math:fsum", f"--shapes={shapes}")
  assert_refused(outcome, "--function=math:fsum", "characters cut", limit_s=10.0)
  line = next(ln for ln in outcome.stderr.splitlines() if ln.startswith("error:"))
  assert len(line) <= 1100, len(line)


def test_control_characters_in_a_path_are_escaped():
  outcome = run_in_process("experiments.run_exported", "--in=evil\x1b]0;owned\x07\x1b[2J.fgx")
  assert_refused(outcome, "--in" if False else "evil\\x1b]0;owned\\x07\\x1b[2J.fgx")
  assert "\x1b" not in outcome.stderr and "\x07" not in outcome.stderr


# Class: a --function that exits or raises BaseException (issue 22: exit 0 with no output).
EXITING = {
    "exit_on_import": "import sys\nsys.exit(0)\n",
    "base_on_import": "class Boom(BaseException):\n  pass\nraise Boom('no')\n",
    "exit_when_called": "import sys\ndef f(x):\n  sys.exit(3)\n",
    "generator_exit": "def f(x):\n  raise GeneratorExit\n",
}


@pytest.mark.parametrize("module", sorted(EXITING))
def test_a_function_that_exits_or_raises_base_exception_is_one_line(tmp_path, monkeypatch, module):
  (tmp_path / f"{module}.py").write_text(EXITING[module])
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  try:
    outcome = run_in_process("experiments.compare", f"--function={module}:f", "--shapes=3",
                             "--engines=eager", "--min_run_time=0.01")
  finally:
    sys.modules.pop(module, None)
  assert_refused(outcome, f"--function={module}:f", "must return")


def test_function_sys_exit_is_one_line():
  outcome = run_in_process("experiments.compare", "--function=sys:exit", "--shapes=3",
                           "--engines=eager", "--min_run_time=0.01")
  assert_refused(outcome, "--function=sys:exit", "SystemExit")


# Class: a closed pipe (`| head`) ends a script quietly (issue 23).
@pytest.mark.slow
@pytest.mark.parametrize("module", ["experiments.dtype_table", "experiments.graph"])
def test_a_closed_pipe_ends_quietly(module):
  start = time.perf_counter()
  with subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE) as job:
    job.stdout.readline()
    job.stdout.close()  # what `| head -1` does after its line
    stderr = job.stderr.read().decode()
    code = job.wait(timeout=60)
  assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
  assert code in (0, 1, -signal.SIGPIPE), code
  assert time.perf_counter() - start < 60


# Class: refusals name the script's own flags (issue 22: crossover and benchmark named --sizes).
@pytest.mark.parametrize("module, args, fragments", [
    ("experiments.crossover", ["--max_elements=10000000000000"],
     ["--max_elements=10000000000000", "refused before allocating"]),
    ("experiments.benchmark", ["--targets=large", "--large_size=100000x100000"],
     ["--large_size=100000x100000", "refused before allocating"]),
], ids=["crossover", "benchmark"])
def test_memory_refusals_name_the_scripts_own_flag(module, args, fragments):
  outcome = run_in_process(module, *args)
  assert_refused(outcome, *fragments, limit_s=10.0)
  assert "--sizes" not in outcome.stderr


def test_compile_cache_refuses_a_world_writable_cache_dir(tmp_path):
  folder = tmp_path / "shared"
  folder.mkdir()
  folder.chmod(0o777)
  assert_refused(run_in_process("experiments.compile_cache", f"--cache_dir={folder}"),
                 "--cache_dir=", "writable by group and others", "chmod go-w", limit_s=5.0)


@pytest.mark.slow
def test_help_renders_a_percent_sign_in_the_docstring():
  done = subprocess.run([sys.executable, "-m", "experiments.crossover", "--help"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr
  assert "95% speedup" in done.stdout and "crossover.py" not in done.stdout.split("flags:")[0]
