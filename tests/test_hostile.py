"""A hostile user's battery: bad inputs and faults against every script, each refused cleanly.

Every case asserts the exit status, exactly one `error:` line naming the flag (or file), no
`Traceback`, a finish within `LIMIT_S`, and nothing half-written (no output, no temporary file).
Cases that end before any work run in this process (`tests.cli`, milliseconds each); signals,
FIFOs, environment variables and the network keep real subprocesses. The classes follow issue 13:
bounded reads, validated before work, memory, the network, wrong results, crafted files and
environments, duplicates in lists. Hypothesis then checks that no string makes a parser raise
anything but `UsageError`.
"""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcgrad import distributed, exporting, outputs, shapes, sharding
from funcgrad.errors import UsageError
from tests.cli import run_in_process
from tests.helpers import ROOT

LIMIT_S = 20.0  # in-process cases take milliseconds; a subprocess ~3 s on 2 cores
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
HUGE = "1000000x1000000"  # 10**12 elements: refused by every memory check


def assert_refused(outcome, *fragments, code=EXIT_USAGE, limit_s=LIMIT_S):
  """One `error:` line naming every fragment, no traceback, the exit status, in time."""
  assert outcome.returncode == code, (outcome.returncode, outcome.stdout, outcome.stderr)
  assert "Traceback" not in outcome.stderr, outcome.stderr
  errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, outcome.stderr
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  if hasattr(outcome, "seconds"):
    assert outcome.seconds < limit_s, outcome.seconds


def assert_nothing_written(folder, keep=()):
  left = sorted(p.name for p in folder.iterdir() if p.name not in keep)
  assert not left, left


def _subprocess(module, *args, env=None, timeout=LIMIT_S):
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)
  result.seconds = time.perf_counter() - start
  return result


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
  """A muladd_sum export with symbolic shape N,D, and its bytes."""
  path = tmp_path_factory.mktemp("graph") / "g.fgx"
  exported = exporting.export_function(
      lambda x, y, z: (jnp_sum(x * y + z), (y, x, x * 0 + 1)),
      exporting.input_specs(("N", "D"), np.float32, 3), ("cpu",))
  exporting.write_artifact(str(path), exported, {"workload": "muladd_sum",
                                                 "example_shape": [3, 4], "shape": ["N", "D"],
                                                 "dtype": "float32"})
  return path


def jnp_sum(x):
  import jax.numpy as jnp  # noqa: PLC0415

  return jnp.sum(x)


# Class 2: numbers checked when flags are parsed, every message naming the flag and the range.
NUMBERS = [
    ("experiments.optimize", ["--learning_rate=inf"], ["--learning_rate=inf", "(0, 1000]"]),
    ("experiments.optimize", ["--learning_rate=nan"], ["--learning_rate=nan", "finite"]),
    ("experiments.optimize", ["--steps=10000000"], ["--steps=10000000", "[1, 100000]"]),
    ("experiments.optimize", ["--min_run_time=nan"], ["--min_run_time=nan", "(0, 3600]"]),
    ("experiments.optimize", ["--seed=-1"], ["--seed=-1", "[0, 4294967295]"]),
    ("experiments.benchmark", ["--min_run_time=inf"], ["--min_run_time=inf", "(0, 3600]"]),
    ("experiments.benchmark", ["--steps=10000000"], ["--steps=10000000", "[1, 100000]"]),
    ("experiments.scaling", ["--min_run_time=nan"], ["--min_run_time=nan"]),
    ("experiments.scaling", ["--simulate_cpu_devices=100000"], ["--simulate_cpu_devices"]),
    ("experiments.scaling", ["--device_counts=0"], ["--device_counts=0", "1..1024"]),
    ("experiments.scaling", ["--device_counts=1,x"], ["--device_counts='1,x'"]),
    ("experiments.gradients", ["--seed=-1"], ["--seed=-1"]),
    ("experiments.tensors", ["--seed=99999999999"], ["--seed=99999999999"]),
    ("experiments.run_exported", ["--in=x", "--seed=-1"], ["--seed=-1"]),
    ("experiments.distributed", ["--repeats=0"], ["--repeats=0"]),
    ("experiments.distributed", ["--timeout=10000000"], ["--timeout=10000000", "86400"]),
    ("experiments.distributed", ["--local_processes=1000"], ["--local_processes=1000", "64"]),
    ("experiments.distributed", ["--process_id=-1"], ["--process_id=-1"]),
    # Shapes name their own flag (graph's --shape used to blame --sizes).
    ("experiments.graph", ["--shape=0x4"], ["--shape", "'0x4'"]),
    ("experiments.graph", ["--shape=99999999999x99999999999"], ["--shape"]),
    ("experiments.scaling", ["--size=3x4,5x6"], ["--size", "3x4,5x6"]),
    ("experiments.benchmark", ["--large_size=abc"], ["--large_size", "'abc'"]),
    ("experiments.optimize", ["--shape=1x2x3"], ["--shape", "'1x2x3'"]),
    ("experiments.distributed", ["--local_processes=2", "--size=-3"], ["--size"]),
    ("experiments.export_graph", ["--out=x.fgx", "--shape=" + "9" * 5000], ["--shape"]),
]


@pytest.mark.parametrize("module, args, fragments", NUMBERS, ids=lambda v: str(v)[:40])
def test_numbers_and_shapes_refused_naming_the_flag(module, args, fragments):
  assert_refused(run_in_process(module, *args), *fragments)


# Class 3: a size anyone can type is refused before anything is allocated.
MEMORY = [
    ("experiments.gradients", ["--n=1000000", "--d=1000000"], ["--n=1000000 --d=1000000"]),
    ("experiments.optimize", ["--workload=linear_regression", f"--shape={HUGE}"],
     [f"--shape={HUGE}"]),
    ("experiments.scaling", [f"--size={HUGE}", "--simulate_cpu_devices=0"], [f"--size={HUGE}"]),
    ("experiments.benchmark", ["--targets=large", f"--large_size={HUGE}"],
     [f"--large_size={HUGE}"]),
    ("experiments.distributed", ["--local_processes=2", f"--size={HUGE}"], [f"--size={HUGE}"]),
]


@pytest.mark.parametrize("module, args, fragments", MEMORY, ids=lambda v: str(v)[:40])
def test_sizes_refused_before_allocating(module, args, fragments):
  outcome = run_in_process(module, *args)
  assert_refused(outcome, *fragments, "refused before allocating")


def test_run_exported_shape_refused_before_allocating(graph_file):
  assert_refused(run_in_process("experiments.run_exported", f"--in={graph_file}",
                                f"--shape={HUGE}"), f"--shape={HUGE}", "refused before allocating")


# Class 2: output paths checked before the first measurement.
def _outputs(tmp_path):
  (tmp_path / "a_file").write_text("x")
  os.symlink(tmp_path / "same.json", tmp_path / "link.json")
  return [
      ("experiments.benchmark", [f"--output_json={tmp_path}"], ["--output_json", "directory"]),
      ("experiments.optimize", [f"--output_json={tmp_path}/a_file/r.json"],
       ["--output_json", "not a directory"]),
      ("experiments.benchmark", [f"--output_json={tmp_path}/same.json",
                                 f"--output_markdown={tmp_path}/link.json"],
       ["--output_json and --output_markdown", "same file"]),
      ("experiments.scaling", [f"--output_json={tmp_path}/"], ["--output_json", "directory"]),
      ("experiments.distributed", ["--local_processes=2", "--output_json=/dev/null"],
       ["--output_json", "not a regular file"]),
      ("experiments.export_graph", [f"--out={tmp_path}"], ["--out", "directory"]),
      ("experiments.compare", [f"--output_jsonl={tmp_path}/same.json",
                               f"--output_json={tmp_path}/same.json"],
       ["--output_json", "--output_jsonl", "same file"]),
  ]


@pytest.mark.parametrize("case", range(7))
def test_output_paths_checked_before_work(tmp_path, case):
  module, args, fragments = _outputs(tmp_path)[case]
  outcome = run_in_process(module, *args)
  assert_refused(outcome, *fragments, limit_s=5.0)
  assert_nothing_written(tmp_path, keep={"a_file", "link.json"})


def test_outputs_follow_the_umask_and_leave_no_temporary_file(tmp_path):
  old = os.umask(0o027)
  try:
    outputs.atomic_write(str(tmp_path / "r.json"), "{}\n")
  finally:
    os.umask(old)
  assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640
  with pytest.raises(UsageError, match="Cannot write"):
    outputs.atomic_write(str(tmp_path), "{}\n")  # a directory: the rename fails
  assert_nothing_written(tmp_path, keep={"r.json"})


# Class 1 and 6: bounded reads and crafted export files.
def _container(header, payload=b"payload"):
  raw = header if isinstance(header, bytes) else json.dumps(header).encode()
  return exporting.MAGIC + len(raw).to_bytes(4, "little") + raw + payload


def _valid_header(payload=b"payload", **changes):
  header = {"workload": "muladd_sum", "example_shape": [3, 4], "platforms": ["cpu"],
            "payload_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
  header.update(changes)
  return {k: v for k, v in header.items() if v is not None}


CRAFTED = [
    ("list", _container([1, 2, 3]), "a JSON list"),
    ("string", _container("hello"), "a JSON str"),
    ("missing", _container(_valid_header(sha256=None)), "field 'sha256' is missing"),
    ("wrong_type", _container(_valid_header(payload_bytes="7")), "field 'payload_bytes'"),
    ("bool", _container(_valid_header(payload_bytes=True)), "field 'payload_bytes'"),
    ("shape", _container(_valid_header(example_shape=[-1, 4])), "field 'example_shape'"),
    ("nested", _container(b"[" * 60000 + b"]" * 60000), "bad header"),
    ("long_header", exporting.MAGIC + (2**31).to_bytes(4, "little"), "claims"),
    ("padded", _container(_valid_header(), b"payload" + b"\0" * 10), "truncated or padded"),
]


@pytest.mark.parametrize("name, blob, fragment", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_headers_name_the_file_and_field(tmp_path, name, blob, fragment):
  path = tmp_path / f"{name}.fgx"
  path.write_bytes(blob)
  assert_refused(run_in_process("experiments.run_exported", f"--in={path}"), fragment,
                 str(path))


def test_workload_that_does_not_match_the_graph(tmp_path, graph_file):
  blob = graph_file.read_bytes()
  start = len(exporting.MAGIC) + 4
  length = int.from_bytes(blob[len(exporting.MAGIC):start], "little")
  header = json.loads(blob[start:start + length])
  header["workload"] = "abs_loss"  # two inputs; the graph takes three
  path = tmp_path / "liar.fgx"
  path.write_bytes(_container(header, blob[start + length:]))
  assert_refused(run_in_process("experiments.run_exported", f"--in={path}"), "'workload'",
                 "abs_loss")


def test_dev_zero_directory_and_huge_file_are_refused_unread(tmp_path):
  os.symlink("/dev/zero", tmp_path / "zero.fgx")
  with open(tmp_path / "huge.fgx", "wb") as f:
    f.truncate(exporting.MAX_FILE_BYTES + 1)  # sparse: no disk used
  for path, fragment in ((tmp_path / "zero.fgx", "character device"),
                         (tmp_path, "a directory"), (tmp_path / "huge.fgx", "more than")):
    assert_refused(run_in_process("experiments.run_exported", f"--in={path}"), fragment,
                   limit_s=2.0)


def test_flagfile_that_is_a_device_is_refused():
  assert_refused(run_in_process("experiments.gradients", "--flagfile=/dev/zero"), "--flagfile",
                 "character device", limit_s=2.0)


@pytest.mark.slow
@pytest.mark.parametrize("module, flag", [("experiments.run_exported", "--in"),
                                          ("experiments.env_check", "--flagfile")])
def test_fifo_is_refused_without_hanging(tmp_path, module, flag):
  fifo = tmp_path / "pipe"
  os.mkfifo(fifo)
  assert_refused(_subprocess(module, f"{flag}={fifo}", timeout=30), "FIFO", str(fifo))


# Class 4: the network.
def _free_port():
  return distributed.free_port()


NETWORK = [
    (["--coordinator=no-such-host.invalid:1234", "--process_id=1"], ["cannot be resolved"]),
    (["--coordinator=::1:1234", "--process_id=0"], ["brackets", "[::1]"]),
    (["--coordinator=192.0.2.1:1234", "--process_id=0"], ["cannot listen on 192.0.2.1:1234"]),
    (["--coordinator=[::1]:99999", "--process_id=0"], ["Invalid coordinator"]),
]


@pytest.mark.parametrize("args, fragments", NETWORK, ids=lambda v: str(v)[:30])
def test_coordinator_addresses(args, fragments):
  outcome = run_in_process("experiments.distributed", "--num_processes=2", "--timeout=5", *args)
  assert_refused(outcome, *fragments)


def _listening(port):
  """Local addresses (hex, as in /proc/net/tcp*) listening on `port`."""
  found = []
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(table, encoding="ascii") as f:
      for line in f.readlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
          found.append(local.rsplit(":", 1)[0])
  return found


@pytest.mark.slow
def test_coordinator_listens_only_on_its_address():
  port = _free_port()
  job = subprocess.Popen([sys.executable, "-m", "experiments.distributed",
                          f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
                          "--process_id=0", "--timeout=15"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline, found = time.monotonic() + 15, []
    while not found and time.monotonic() < deadline and job.poll() is None:
      time.sleep(0.2)
      found = _listening(port)
  finally:
    job.kill()
    job.communicate()
  loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
  assert found and set(found) <= loopback, found


# Class 5: results that are wrong must not look right.
def test_diverging_fit_is_not_reported_as_reaching_the_optimum():
  outcome = run_in_process("experiments.optimize", "--learning_rate=100", "--loops=scan",
                           "--min_run_time=0.01", "--steps=200")
  row = next(line for line in outcome.stdout.splitlines() if line.startswith("scan "))
  assert " yes " not in row and " NO " in row, outcome.stdout


def test_bfloat16_export_matches_with_a_bfloat16_tolerance(tmp_path):
  path = tmp_path / "bf16.fgx"
  assert run_in_process("experiments.export_graph", f"--out={path}", "--shape=N,D",
                        "--dtype=bfloat16", "--platforms=cpu,cpu").returncode == 0
  assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
  ran = run_in_process("experiments.run_exported", f"--in={path}", "--shape=64x64")
  # (In this process the workload code is already imported, which run_exported reports as exit
  # 1; test_exporting checks that in a fresh process.)
  assert "matches the NumPy reference (rtol 0.062 for bfloat16)" in ran.stdout, ran.stdout


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


# Class 6: crafted environments and Ctrl-C.
@pytest.mark.slow
@pytest.mark.parametrize("platforms", ["bogus", "cuda"])
def test_env_check_with_a_bad_jax_platforms_is_one_line(platforms):
  assert_refused(_subprocess("experiments.env_check", env={"JAX_PLATFORMS": platforms}),
                 "JAX_PLATFORMS", platforms)


def _children(pid):
  try:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
      return [int(c) for c in f.read().split()]
  except OSError:
    return []


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


@pytest.mark.slow
def test_ctrl_c_during_a_job_is_one_line_and_exit_130():
  job = subprocess.Popen([sys.executable, "-m", "experiments.distributed", "--local_processes=2",
                          "--repeats=100000", "--timeout=60"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline, children = time.monotonic() + 20, []
  while len(children) < 2 and time.monotonic() < deadline:
    time.sleep(0.1)
    children = _children(job.pid)
  time.sleep(0.5)  # both started: the parent is waiting on them
  job.send_signal(signal.SIGINT)
  _, stderr = job.communicate(timeout=20)
  job.seconds = 0.0
  job.stderr = stderr
  assert_refused(job, "interrupted", "stopped the 2 local processes", code=EXIT_INTERRUPTED)
  time.sleep(0.5)
  assert not [c for c in children if _alive(c)], children


# A restart's new process: the held signal is already pending when it starts, and its handlers
# come only after a pause, as a loaded machine gives them (its start-up and the package's import).
_RESTARTED = ("import time; time.sleep(0.3); from funcgrad.experiments import "
              "install_early_signal_handlers; install_early_signal_handlers(); time.sleep(30)")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["INT", "TERM", "HUP"])
def test_a_signal_just_after_a_restart_waits_for_the_handlers(signum):
  # The allocator's restart (execve) keeps the signal mask, not the handlers: unheld, the signal
  # would end the new process before it has any (no message, or a KeyboardInterrupt traceback).
  restart = ("import os, sys; from funcgrad.experiments import signals_held\n"
             "with signals_held():\n"
             f"  os.kill(os.getpid(), {int(signum)})\n"
             f"  os.execv(sys.executable, [sys.executable, '-c', {_RESTARTED!r}])")
  start = time.monotonic()
  job = subprocess.run([sys.executable, "-c", restart], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, check=False)
  assert job.returncode == 128 + signum, (job.returncode, job.stderr)
  assert job.stderr.splitlines() == [
      f"error: interrupted ({'Ctrl-C' if signum == signal.SIGINT else signum.name}) while "
      "starting; nothing was written."]
  assert time.monotonic() - start < 20  # let through at once, not after the 30 s sleep


@pytest.mark.slow
def test_ctrl_c_while_importing_is_one_line(tmp_path):
  job = subprocess.Popen([sys.executable, "-m", "experiments.optimize", "--loops=eager",
                          "--steps=100000", f"--output_json={tmp_path}/r.json"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  time.sleep(0.5)  # past the launcher's first lines (its handler is set), inside `import jax`
  job.send_signal(signal.SIGINT)
  try:
    _, stderr = job.communicate(timeout=20)
  finally:
    job.kill()  # never left running when the assertion fails
  job.stderr = stderr
  assert_refused(job, "interrupted", code=EXIT_INTERRUPTED)
  assert_nothing_written(tmp_path)


# Class 7: duplicates in list flags are dropped.
def test_duplicates_in_list_flags_are_dropped():
  assert shapes.parse_ints("1,2,1,2", "--device_counts") == [1, 2]
  assert shapes.parse_names("cpu,cpu,cuda", ("cpu", "cuda"), "platform") == ["cpu", "cuda"]
  assert shapes.parse_shapes("3x4,3x4", "--sizes") == [(3, 4)]


# Hypothesis: no string makes a parser raise anything but UsageError.
TEXT = st.one_of(st.text(max_size=40), st.text(alphabet="0123456789x,:[]. -N", max_size=30),
                 st.from_regex(r"\[?[0-9a-f:.]{0,20}\]?:[0-9]{0,7}", fullmatch=True))
PARSERS = {
    "parse_shape": lambda t: shapes.parse_shape(t, "--shape", symbolic=True, scalar=True),
    "parse_shapes": lambda t: shapes.parse_shapes(t, "--sizes", max_rank=2),
    "parse_mesh": sharding.parse_mesh,
    "parse_address": distributed.parse_address,
    "export_parse_shape": exporting.parse_shape,
    "parse_ints": lambda t: shapes.parse_ints(t, "--argnums"),
}


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_parsers_raise_only_usage_errors(name, text):
  with contextlib.suppress(UsageError):
    PARSERS[name](text)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["workload", "example_shape", "platforms", "payload_bytes", "sha256",
                         "shape", "dtype", "x"]), inner, max_size=8),
    max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_export_header_parser_raises_only_usage_errors(raw):
  try:
    header = exporting.parse_header(raw, "h.fgx")
  except UsageError:
    return
  assert isinstance(header, dict) and isinstance(header["payload_bytes"], int)
