"""One program across processes with `jax.distributed`: join a job, run sharded, gather, check.

Every process runs this same code. Each builds the same global inputs from one seed, keeps only
the shards that live on its own devices (`jax.make_array_from_callback`), and runs one jitted
value+grads over the global mesh; XLA inserts the cross-process all-reduce for the sum (gloo on
CPU, NCCL on GPU). The outputs are gathered to every process and checked against a float64 NumPy
reference and against the same function run unsharded on one local device.
"""

import errno
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from funcgrad import _compat, sharding
from funcgrad.errors import UsageError

PARENT_ENV = "FUNCGRAD_JOB_PARENT"  # set for the processes of a local job: the pid they die with
WILDCARDS = ("0.0.0.0", "::")


class JobError(UsageError, RuntimeError):
  """The processes could not form or finish the job."""


def parse_address(text: str) -> tuple[str, int]:
  """'HOST:PORT' -> (host, port); '[::1]:PORT' -> ('::1', port) (IPv6 literals in brackets).

  Raises:
    UsageError: naming the bad address.
  """
  host, _, port = text.rpartition(":")
  if host.startswith("[") and host.endswith("]"):
    host = host[1:-1]
    if not host or ":" not in host:
      host = ""  # brackets are for IPv6 literals only
  elif ":" in host:
    raise UsageError(f"Invalid coordinator {text!r}: an IPv6 address goes in brackets, e.g. "
                     "[::1]:12355.")
  if (not host or len(host) > 253 or not host.isascii() or not host.isprintable()
      or any(c in host for c in " /[]@") or not (port.isascii() and port.isdigit())
      or len(port) > 5 or not 0 < int(port) < 65536):
    raise UsageError(f"Invalid coordinator {text!r}: expected HOST:PORT with a port in 1..65535, "
                     "e.g. 127.0.0.1:12355 or [::1]:12355.")
  return host, int(port)


def resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
  """The address family and socket address of `host:port` (the first one it resolves to).

  Raises:
    UsageError: the host does not resolve (a typo, or no DNS), naming it.
  """
  try:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
  except (socket.gaierror, UnicodeError) as e:
    reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
    raise UsageError(f"Coordinator host {host!r} cannot be resolved ({reason}); check "
                     "--coordinator.") from None
  return family, address


def free_port(host: str = "127.0.0.1") -> int:
  """A TCP port nobody listens on right now."""
  with socket.socket() as s:
    s.bind((host, 0))
    return s.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
  """Raises UsageError if the coordinator cannot listen on `host:port` here: the port is taken,
  or the host is not an address of this machine (or does not resolve)."""
  family, address = resolve(host, port)
  with socket.socket(family, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(address)
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        raise UsageError(f"Coordinator port {port} on {host} is in use ({e.strerror}); pick "
                         "another --coordinator port, or --local_processes (a free port).") \
            from None
      raise UsageError(f"Process 0 cannot listen on {host}:{port} ({e.strerror}): the "
                       "coordinator's host must be an address of process 0's machine.") from None


_WATCHER = """
import os, signal, sys, time
pid, deadline, message = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), sys.argv[3]
while time.monotonic() < deadline:
  if os.getppid() != pid:
    sys.exit(0)  # the watched process (our parent) is gone, even if not yet reaped
  time.sleep(0.1)
sys.stderr.write(message + "\\n")
sys.stderr.flush()
os.kill(pid, signal.SIGKILL)
"""


class Watchdog:
  """Ends this process with one clear line if the job is not done within `timeout` seconds.

  A peer that dies mid-collective leaves the others blocked inside XLA, holding the GIL, where no
  Python thread or signal handler can run; so the watchdog is a tiny separate process that prints
  the message and kills this one.
  """

  def __init__(self, timeout: float, what: str):
    self._args = (str(timeout), f"error: {what} did not finish within {timeout:g} s: a process "
                  "died, hung or never joined (see --timeout).")
    self._watcher: subprocess.Popen | None = None

  def __enter__(self) -> "Watchdog":
    self._watcher = subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()),
                                      *self._args])
    return self

  def __exit__(self, *exc: Any) -> None:
    if self._watcher is not None:
      self._watcher.kill()
      self._watcher.wait()


def initialize(coordinator: str, num_processes: int, process_id: int, local_devices: int,
               timeout: int) -> None:
  """Joins the job: `local_devices` CPU devices per process, gloo collectives on CPU.

  Raises:
    UsageError: bad arguments, or the coordinator port is taken (process 0 checks).
    JobError: JAX could not form the job (a message naming the coordinator).
  """
  host, port = parse_address(coordinator)
  if not 0 <= process_id < num_processes:
    raise UsageError(f"Invalid --process_id={process_id}: it must be in 0..{num_processes - 1}.")
  if process_id == 0:
    check_port_free(host, port)
    if host in WILDCARDS:
      sys.stderr.write(f"note: --coordinator={coordinator}: process 0's coordinator listens on "
                       f"every interface, IPv4 and IPv6 alike ([::]:{port} takes both), and has "
                       "no authentication; firewall the port for both (docs/SCALING.md, \"Who "
                       "can join a job\").\n")
  else:
    resolve(host, port)
  sharding.set_cpu_device_count(local_devices, "--local_devices")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    # The coordinator binds only the address it was given (JAX's default is every interface,
    # and its service has no authentication).
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout,
                               heartbeat_timeout_seconds=timeout + 30,
                               coordinator_bind_address=coordinator)
  except Exception as e:  # noqa: BLE001 - XLA raises several types; the user needs one line.
    raise JobError(f"process {process_id} could not join the job at {coordinator} within "
                       f"{timeout} s: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
        from None


def shutdown() -> None:
  """Leaves the job (waits for every process to arrive)."""
  jax.distributed.shutdown()


def abort(message: str) -> None:
  """Prints one `error:` line (the first line of `message`) and exits at once with status 1.

  `os._exit` skips JAX's atexit shutdown, which would wait for a peer that is gone.
  """
  first = message.strip().splitlines()[0] if message.strip() else "the job failed"
  sys.stderr.write(f"error: {first}\n")
  sys.stderr.flush()
  sys.stdout.flush()
  os._exit(1)


def check_same_flags(settings: Sequence[str], process_id: int) -> None:
  """Refuses, before the job's first real collective, a job whose processes were started with
  different `settings` (the flags that shape the computation): a mismatch there would abort
  inside XLA (C++ terminate, a fatal dump). The check itself is one fixed-size gather.

  Raises:
    JobError: naming the processes that differ and the flags that must agree.
  """
  text = " ".join(settings)
  digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
  gathered = np.asarray(_compat.process_allgather(digest)).reshape(-1, digest.size)
  differ = [i for i, row in enumerate(gathered) if row.tobytes() != digest.tobytes()]
  if differ:
    raise JobError(f"process {process_id} was started with {text}, process(es) "
                   f"{', '.join(map(str, differ))} with other values; every process of a job "
                   "needs the same values of these flags.")


def _wait(children: list[subprocess.Popen], deadline: float) -> int | None:
  """Waits until every child is done, one fails (its index) or the deadline passes."""
  while any(c.poll() is None for c in children) and time.monotonic() < deadline:
    failed = next((i for i, c in enumerate(children) if c.poll() not in (None, 0)), None)
    if failed is not None:
      return failed
    time.sleep(0.05)
  return None


def run_local_job(count: int, module: str, forwarded: Sequence[str], timeout: float) -> str:
  """Runs `python -m module` as processes 0..count-1 of a job on 127.0.0.1 (a free port:
  loopback only), and returns process 0's stdout (gloo's connection notices left out).

  The children die with this process, whatever ends it: a signal raised here (Ctrl-C, SIGTERM,
  SIGHUP: `finally` kills them) or SIGKILL (`PARENT_ENV` tells a child to ask the kernel for a
  parent-death signal as it starts: `funcgrad.experiments.die_with_parent`).

  Raises:
    JobError: a process failed or the job did not finish within `timeout` seconds (its last
      line of stderr quoted).
  """
  coordinator = f"127.0.0.1:{free_port()}"  # loopback: no other machine can join
  env = {**os.environ, PARENT_ENV: str(os.getpid())}
  children: list[subprocess.Popen] = []
  try:
    for i in range(count):
      children.append(subprocess.Popen(
          [sys.executable, "-m", module, f"--coordinator={coordinator}",
           f"--num_processes={count}", f"--process_id={i}", *forwarded],
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    failed = _wait(children, time.monotonic() + timeout)
  finally:  # an exception or a signal included: no process outlives the job
    for child in children:
      if child.poll() is None:
        child.kill()
  outputs = [c.communicate() for c in children]
  if failed is None:
    failed = next((i for i, c in enumerate(children) if c.returncode != 0), None)
  if failed is not None:
    reason = [line for line in outputs[failed][1].splitlines() if line.strip()]
    raise JobError(f"process {failed} of {count} exited with {children[failed].returncode}: "
                   f"{reason[-1].removeprefix('error: ') if reason else 'no message'}")
  return "".join(line for line in outputs[0][0].splitlines(keepends=True)
                 if not line.startswith("[Gloo]"))
