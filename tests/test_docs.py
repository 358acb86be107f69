"""Every command the documentation shows runs, as written, from the folder the docs say.

Commands are read from README.md and docs/*.md: each line of a fenced `bash` block, each `$ `
line of another block, and each inline `python -m experiments...` or `funcgrad ...` span that is
not a synopsis (one with `[`, `<`, `|`, `...` or an ALL-CAPS placeholder value). The test never
edits what a command says; it only appends flags that make it quick (they come last, and absl
keeps the last value of a repeated flag), and points every file a command writes into a
temporary directory.

Where each runs is where the docs say: `python -m experiments.X` from the repository root;
`funcgrad X` from the user's own folder (a temporary directory holding the modules the docs ask
the reader to write), with only the `funcgrad` package importable, as the README's install
leaves it. The outputs that a `$ ` block shows for a deterministic tutorial script are checked
line for line against a fresh run.

How each runs: a command runs in this process, from that folder (`tests.cli`: the same flag
parsing and `_cli.run` path, without a second start-up of JAX, torch and TensorFlow), except
what needs a process of its own (`_why_a_process`): an environment variable set before the
command, a device count JAX fixes when it starts, a process-wide compilation cache, processes a
command starts itself, an allocator preloaded by a re-exec, and a `funcgrad X` command that
imports the user's module (it must find that module, and only the installed funcgrad, as the
console script does).
"""

import contextlib
import dataclasses
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import jax
import pytest
from absl import flags

from funcgrad import gpu_available
from tests.cli import run_in_process
from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands not run here, each with why (the GPU and multi-host ones guard what docs may show).
SKIPS = {
    r"\bpip install\b": "installs packages: CI runs the README's set-up commands (.ci/run)",
    r"--require_gpu|--backends=gpu|--device=cuda": "needs a GPU",
    r"--process_id=": "one process of a multi-process job: the others must start beside it",
}

# Documented commands that fail today, each with the bug; strict, so a fix makes the test say so.
KNOWN_FAILURES: dict[str, str] = {}

# Appended to every command of a script, after the doc's own flags (so these win).
QUICK_FLAGS = {
    "experiments.compare": ["--min_run_time=0.01"],
    "experiments.crossover": ["--min_run_time=0.01", "--max_elements=4096"],
    "experiments.optimize": ["--min_run_time=0.01", "--steps=20"],
    "experiments.scaling": ["--min_run_time=0.01", "--size=64x32"],
    "experiments.benchmark": ["--min_run_time=0.01", "--repeats=1", "--large_size=256x256",
                              "--steps=100", "--mlp_size=16x32", "--attention_size=16x64",
                              "--mlp_peak_size=16x32", "--answer_sizes=3x4",
                              "--answer_engines=numpy,eager,jit",
                              # every engine on every model: tests/test_model_workloads.py
                              "--model_engines=numpy,eager,jit"],
}
# Added only when the doc gives no sizes: the default's smallest size stays (it is what a
# divisibility mistake like 3x4 over 4 devices trips on), the large one goes (tests/
# test_compare_cli.py sweeps several sizes through the same path).
QUICK_SIZES = {"experiments.compare": "--sizes=3x4"}
# A benchmark command without --targets runs every group; the answers group (half its time) is
# left to the documented `--targets=answers` command, which runs it with the same quick flags.
EVERY_GROUP_BUT_ANSWERS = "--targets=large,small,adam,cache,models,harness"

# Flags whose value is a file or directory the command writes; and flags that read one.
OUTPUT_FLAGS = ("--output_json", "--output_csv", "--output_jsonl", "--output_markdown", "--plot",
                "--out", "--compilation_cache_dir", "--save_baseline")
INPUT_FLAGS = ("--in", "--compare_to")

# Seconds measured on 2 cores with every peer installed; at or above ~5 s a command is `slow`.
SLOW_SCRIPTS = ("experiments.compare", "experiments.benchmark", "experiments.distributed",
                "experiments.compile_cache", "experiments.optimize", "experiments.scaling",
                "experiments.crossover")
TIMEOUT_S = 240

# Tutorial scripts whose output is the same on every CPU-only machine with this jax: a `$ ` block
# of theirs must be what a run prints (env_check's versions and the timings differ by machine).
EXACT_OUTPUT = ("experiments.tensors", "experiments.dtype_table", "experiments.device_placement",
                "experiments.gradients")

_SYNOPSIS = re.compile(r"[\[<|]|\.\.\.|=[A-Z][A-Z_]*(:[A-Z]+)?(\.\w+)?(\s|$)")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MODULE_FILE = re.compile(r"\A# (\w+)\.py\n")


@dataclasses.dataclass(frozen=True)
class DocCommand:
  text: str
  where: str

  @property
  def skip_reason(self) -> str | None:
    for pattern, reason in SKIPS.items():
      if re.search(pattern, self.text):
        return reason
    return None


def _bash_lines(block: str) -> list[str]:
  lines = []
  for line in block.replace("\\\n", " ").splitlines():
    line = re.sub(r"\s+#\s.*$", "", line).strip()
    if line and not line.startswith("#"):
      lines.append(" ".join(line.split()))
  return lines


def _commands_of(path: pathlib.Path) -> list[DocCommand]:
  text = path.read_text()
  found = []
  for lang, block in _FENCE.findall(text):
    if lang == "bash":
      found += _bash_lines(block)
    else:
      found += [line[2:].strip() for line in block.splitlines() if line.startswith("$ ")]
  prose = _FENCE.sub("", text)
  for span in re.findall(r"`((?:python -m\s+experiments\.|funcgrad )[^`]+)`", prose):
    span = " ".join(span.split())
    named_only = span.startswith("funcgrad ") and " --" not in span  # "`funcgrad compare` times"
    if not _SYNOPSIS.search(span) and not named_only:
      found.append(span)
  return [DocCommand(c, path.relative_to(ROOT).as_posix()) for c in found]


def _doc_modules() -> dict[str, str]:
  """`python` blocks that open with `# NAME.py`: modules the docs ask the reader to write."""
  modules = {}
  for path in DOCS:
    for lang, block in _FENCE.findall(path.read_text()):
      match = _MODULE_FILE.match(block)
      if lang == "python" and match:
        modules[match.group(1)] = block
  return modules


def _without_outputs(text: str) -> str:
  return " ".join(a for a in text.split() if not a.startswith(tuple(f + "=" for f in OUTPUT_FLAGS)))


def _all_commands() -> list[DocCommand]:
  """Each command once; one that differs from another only by the files it writes runs once."""
  unique: dict[str, DocCommand] = {}
  for path in DOCS:
    for command in _commands_of(path):
      key = _without_outputs(command.text)
      if key not in unique or len(command.text) > len(unique[key].text):
        unique[key] = command
  return list(unique.values())


COMMANDS = _all_commands()
RUN = [c for c in COMMANDS if c.skip_reason is None]


def _module(argv: list[str]) -> str:
  """'experiments.X' for `python -m experiments.X ...` and for `funcgrad X ...`."""
  if argv[:1] == ["funcgrad"] and len(argv) > 1:
    return f"experiments.{argv[1]}"
  return argv[2] if argv[:2] == ["python", "-m"] and len(argv) > 2 else ""


def _from_users_folder(argv: list[str]) -> bool:
  return argv[:1] == ["funcgrad"]


def _funcgrad_command() -> list[str]:
  """The `funcgrad` console script the install put beside this python (else the same entry
  point through `python -m funcgrad`)."""
  script = pathlib.Path(sys.executable).with_name("funcgrad")
  return [str(script)] if script.is_file() else [sys.executable, "-m", "funcgrad"]


def _flag_value(argv: list[str], flags: tuple[str, ...]) -> list[tuple[int, str, str]]:
  hits = []
  for i, arg in enumerate(argv):
    name, eq, value = arg.partition("=")
    if eq and name in flags:
      hits.append((i, name, value))
  return hits


def _quick_argv(argv: list[str], tmp: pathlib.Path, written: dict[str, pathlib.Path]) -> list[str]:
  """The command with the venv's python, files under tmp and the quick flags appended."""
  module = _module(argv)
  argv = [*_funcgrad_command(), *argv[1:]] if _from_users_folder(argv) else [
      sys.executable, *argv[1:]]
  for i, name, value in _flag_value(argv, OUTPUT_FLAGS):
    target = written.setdefault(value, tmp / "out" / f"{len(written)}-{pathlib.Path(value).name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    argv[i] = f"{name}={target}"
  for i, name, value in _flag_value(argv, INPUT_FLAGS):
    if value in written:
      argv[i] = f"{name}={written[value]}"
  has_sizes = any(a.startswith(("--sizes=", "--function=")) for a in argv)
  if module in QUICK_SIZES and not has_sizes:
    argv.append(QUICK_SIZES[module])
  if module == "experiments.benchmark" and not any(a.startswith("--targets=") for a in argv) \
      and _answers_documented():
    argv.append(EVERY_GROUP_BUT_ANSWERS)
  return argv + QUICK_FLAGS.get(module, [])


def _answers_documented() -> bool:
  return any(_module(shlex.split(c.text)) == "experiments.benchmark" and
             "--targets=answers" in c.text for c in RUN)


def _producer_of(path: str) -> DocCommand | None:
  for command in RUN:
    if any(v == path for _, _, v in _flag_value(shlex.split(command.text), OUTPUT_FLAGS)):
      return command
  return None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  """A directory holding the modules the docs define (the user's folder), a directory from which
  only `funcgrad` imports (what the install provides), and what the commands wrote so far."""
  tmp = tmp_path_factory.mktemp("docs")
  for name, source in _doc_modules().items():
    (tmp / f"{name}.py").write_text(source)
  installed = tmp_path_factory.mktemp("site")
  (installed / "funcgrad").symlink_to(ROOT / "funcgrad", target_is_directory=True)
  return tmp, {}, set(), installed


def _where_it_runs(argv: list[str], env: dict[str, str], workspace) -> pathlib.Path:
  """Sets env's PYTHONPATH for the command and returns the folder it runs in: the repository
  root for `python -m experiments.X`; for `funcgrad X`, the user's folder, with this checkout's
  `funcgrad` as the only package it adds (as the install leaves it: no `experiments`)."""
  tmp, _, _, installed = workspace
  users = _from_users_folder(argv)
  others = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and not (users and pathlib.Path(p).resolve() == ROOT)]
  env["PYTHONPATH"] = os.pathsep.join([str(installed if users else ROOT), *others])
  return tmp if users else ROOT


# Scripts that need a process of their own whatever their flags, each with why.
OWN_PROCESS_SCRIPTS = {
    "experiments.scaling": "sets JAX's device count (--simulate_cpu_devices, default 8)",
    "experiments.compile_cache": "sets the process-wide persistent compilation cache",
    "experiments.distributed": "starts and joins processes of its own",
    "experiments.run_exported": "checks that the workload code was never imported",
}
OWN_PROCESS_FLAGS = ("--simulate_cpu_devices", "--compilation_cache_dir", "--allocator")
# Flags that import the user's own module: from the user's folder, through the console script.
USER_MODULE_FLAGS = ("--function", "--inputs", "--peer_function")


def _why_a_process(argv: list[str], env: dict[str, str]) -> str | None:
  """Why the command needs a real subprocess, or None when it can run in this process."""
  if env:
    return f"sets {', '.join(env)} before it starts"
  if _from_users_folder(argv) and (len(argv) < 2 or argv[1].startswith("-") or any(
      a.partition("=")[0] in USER_MODULE_FLAGS for a in argv)):
    return ("the console script itself, or the user's module imported from the user's folder "
            "where only the installed funcgrad is found")
  if _module(argv) in OWN_PROCESS_SCRIPTS:
    return OWN_PROCESS_SCRIPTS[_module(argv)]
  flag = next((a for a in argv if a.partition("=")[0] in OWN_PROCESS_FLAGS), None)
  return None if flag is None else f"{flag} acts when the process starts"


def _run(command: DocCommand, workspace) -> None:
  tmp, written, done, installed = workspace
  argv = shlex.split(command.text)
  for _, _, value in _flag_value(argv, INPUT_FLAGS):
    producer = _producer_of(value)
    if producer is not None and producer.text not in done:
      _run(producer, workspace)  # this command reads what an earlier one wrote
  assignments = {}
  while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
    name, _, value = argv.pop(0).partition("=")
    assignments[name] = value
  assert _module(argv).startswith("experiments."), (
      f"{command.where}: not a `python -m experiments...` or `funcgrad ...` command, and not in "
      f"SKIPS: {command.text}")
  quick = _quick_argv(argv, tmp, written)
  start = time.perf_counter()
  if _why_a_process(argv, assignments) is None:
    users = _from_users_folder(argv)
    args = quick[len(_funcgrad_command()) + 1:] if users else quick[3:]
    with contextlib.chdir(tmp if users else ROOT):  # where the docs say it runs
      result = run_in_process(_module(argv), *args)
  else:
    env = {**os.environ, **assignments}
    cwd = _where_it_runs(argv, env, workspace)
    result = subprocess.run(quick, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S, check=False)
  done.add(command.text)
  assert result.returncode == 0, (
      f"{command.where}: `{command.text}` exited {result.returncode} after "
      f"{time.perf_counter() - start:.1f} s\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def _param(command: DocCommand):
  marks = [pytest.mark.slow] if _module(shlex.split(command.text)) in SLOW_SCRIPTS else []
  for pattern, reason in KNOWN_FAILURES.items():
    if re.search(pattern, command.text):
      marks.append(pytest.mark.xfail(reason=reason, strict=True))
  return pytest.param(command, id=f"{command.where}: {command.text}"[:120], marks=marks)


def test_the_docs_show_commands():
  assert len(RUN) >= 15, [c.text for c in RUN]
  assert len(COMMANDS) - len(RUN) == 2, [c.text for c in COMMANDS if c.skip_reason]  # set-up


def test_quick_flags_come_after_the_docs_flags(tmp_path):
  argv = _quick_argv(shlex.split("python -m experiments.compare --min_run_time=5 --plot=a.png"),
                     tmp_path, {})
  assert argv[0] == sys.executable
  assert argv[-2:] == ["--sizes=3x4", "--min_run_time=0.01"]
  assert argv[4] == f"--plot={tmp_path}/out/0-a.png"


@pytest.mark.parametrize("command, why", [
    ("python -m experiments.compare --sizes=3x4", None),
    ("funcgrad compare --sizes=1000x1000", None),  # in-process, from the user's folder
    ("funcgrad compare --function=mymodel:loss --shapes=3", "the user's module"),
    ("funcgrad --help", "the console script itself"),
    ("python -m experiments.compare --simulate_cpu_devices=8", "--simulate_cpu_devices=8"),
    ("python -m experiments.compare --allocator=tcmalloc", "--allocator=tcmalloc"),
    ("python -m experiments.scaling", "device count"),
    ("python -m experiments.run_exported --in=g.fgx", "never imported"),
])
def test_what_needs_a_process_of_its_own(command, why):
  said = _why_a_process(shlex.split(command), {})
  assert said is None if why is None else why in said
  assert "XLA_FLAGS" in _why_a_process(shlex.split("python -m experiments.compare"),
                                       {"XLA_FLAGS": "--xla_foo"})


def test_the_quick_benchmark_runs_every_group_in_one_of_its_commands():
  from funcgrad.bench import headline  # noqa: PLC0415 - the benchmark's own registry
  groups = EVERY_GROUP_BUT_ANSWERS.partition("=")[2].split(",")
  assert set(groups) == set(headline.GROUPS) - {"answers"}
  assert _answers_documented()


def test_absl_keeps_the_last_value_of_a_repeated_flag():
  values = flags.FlagValues()
  flags.DEFINE_float("min_run_time", 0.2, "Seconds.", flag_values=values)
  values(["prog", "--min_run_time=5", "--min_run_time=0.01"])
  assert values.min_run_time == 0.01


def _shown_outputs() -> list[tuple[str, str, str]]:
  """(where, command, output) for each `$ ` line of a non-bash block of a script in
  EXACT_OUTPUT: the lines after it, up to the next `$ ` line or the block's end."""
  found = []
  for path in DOCS:
    for lang, block in _FENCE.findall(path.read_text()):
      if lang == "bash":
        continue
      for part in re.split(r"^(?=\$ )", block, flags=re.M):
        command, _, output = part.partition("\n")
        if command.startswith("$ ") and _module(shlex.split(command[2:])) in EXACT_OUTPUT:
          found.append((path.relative_to(ROOT).as_posix(), command[2:].strip(), output))
  return found


SHOWN = _shown_outputs()


def _output_checked(command: DocCommand) -> bool:
  """Whether test_shown_output_is_what_the_command_prints runs this very command (in-process;
  tests/test_experiments.py runs each of these scripts once as a real process)."""
  return not gpu_available() and any(c == command.text for _, c, _ in SHOWN)


@pytest.mark.parametrize("command", [_param(c) for c in RUN if not _output_checked(c)])
def test_documented_command_runs(command, workspace):
  _run(command, workspace)


@pytest.mark.skipif(gpu_available(), reason="the docs show a CPU-only machine's output")
@pytest.mark.parametrize("where, command, output", SHOWN, ids=[f"{w}: {c}" for w, c, _ in SHOWN])
def test_shown_output_is_what_the_command_prints(where, command, output):
  argv = shlex.split(command)
  stated = re.search(r"running jax (\S+?)\)", output)
  if stated and stated.group(1) != jax.__version__:
    pytest.skip(f"{where} shows jax {stated.group(1)}'s output; this is jax {jax.__version__}")
  module, args = _module(argv), argv[3:] if argv[0] == "python" else argv[2:]
  result = run_in_process(module, *args)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == output.splitlines(), f"{where}: `{command}`"


def test_the_tutorial_shows_every_exact_output():
  assert sorted({_module(shlex.split(c)) for _, c, _ in SHOWN}) == sorted(EXACT_OUTPUT)


def test_a_funcgrad_command_runs_where_only_funcgrad_is_installed(workspace):
  env = dict(os.environ)
  cwd = _where_it_runs(["funcgrad", "compare"], env, workspace)
  probe = ("import importlib.util, funcgrad, mymodel; "
           "print(importlib.util.find_spec('experiments') is None, funcgrad.__file__)")
  result = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True)
  no_experiments, where = result.stdout.split()
  assert no_experiments == "True"  # `python -m experiments.X` would fail here, as for a user
  assert pathlib.Path(where).resolve() == ROOT / "funcgrad" / "__init__.py"  # this checkout's
