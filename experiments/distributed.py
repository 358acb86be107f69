"""One sharded value+grads across processes with jax.distributed (gloo on CPU, NCCL on GPU).

Join a job (one process per host on a cluster):
  python -m experiments.distributed --coordinator=HOST:PORT --num_processes=P --process_id=I
Or spawn P local processes on 127.0.0.1 with a free port:
  python -m experiments.distributed --local_processes=2 [--local_devices=2]

Process 0 gathers the outputs and prints them with the timing; every process checks them against
a float64 NumPy reference and an unsharded single-device run. A process that dies or never joins
makes the others exit within --timeout with one clear line.
"""

import json
import subprocess
import sys
import time

from absl import flags

from experiments import _cli
from funcgrad import distributed
from funcgrad.bench import jobs, report, specs, workloads
from funcgrad.errors import UsageError

_COORDINATOR = flags.DEFINE_string("coordinator", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.",
                                      lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..P-1.")
_LOCAL_PROCESSES = flags.DEFINE_integer("local_processes", None, "Spawn this many processes on "
                                        "127.0.0.1 (a free port) and run the job.", lower_bound=1)
_LOCAL_DEVICES = flags.DEFINE_integer("local_devices", 2, "CPU devices per process.",
                                      lower_bound=1)
_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_SIZE = flags.DEFINE_string("size", "64x32", "Global input size (NxD, or N for 1-D workloads).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs (the same in every process).")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Calls per timed block.", lower_bound=1)
_TIMEOUT = flags.DEFINE_integer("timeout", 60, "Seconds before a stuck job gives up.",
                                lower_bound=1)
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Process 0 writes its result here.")


def _forwarded_flags() -> list[str]:
  return [f"--local_devices={_LOCAL_DEVICES.value}", f"--workload={_WORKLOAD.value}",
          f"--size={_SIZE.value}", f"--seed={_SEED.value}", f"--repeats={_REPEATS.value}",
          f"--timeout={_TIMEOUT.value}",
          *([f"--output_json={_OUTPUT_JSON.value}"] if _OUTPUT_JSON.value else [])]


def _spawn(count: int) -> int:
  coordinator = f"127.0.0.1:{distributed.free_port()}"
  children = [subprocess.Popen(
      [sys.executable, "-m", "experiments.distributed", f"--coordinator={coordinator}",
       f"--num_processes={count}", f"--process_id={i}", *_forwarded_flags()],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]
  deadline = time.monotonic() + _TIMEOUT.value + 30
  failed = None
  while any(c.poll() is None for c in children) and time.monotonic() < deadline:
    failed = next((i for i, c in enumerate(children) if c.poll() not in (None, 0)), None)
    if failed is not None:
      break
    time.sleep(0.05)
  for child in children:
    if child.poll() is None:
      child.kill()
  outputs = [c.communicate() for c in children]
  if failed is None:
    failed = next((i for i, c in enumerate(children) if c.returncode != 0), None)
  if failed is not None:
    reason = [line for line in outputs[failed][1].splitlines() if line.strip()]
    raise distributed.JobError(f"process {failed} of {count} exited with "
                               f"{children[failed].returncode}: "
                               f"{reason[-1] if reason else 'no message'}")
  # gloo announces its connections on stdout; the job's report is the rest.
  print("".join(line for line in outputs[0][0].splitlines(keepends=True)
                if not line.startswith("[Gloo]")), end="")
  return 0


def _join() -> int:
  if _COORDINATOR.value is None or _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
    raise UsageError("Pass --coordinator, --num_processes and --process_id to join a job, or "
                     "--local_processes=P to run one here.")
  workload = workloads.get_workload(_WORKLOAD.value)
  (size,) = specs.parse_sizes(_SIZE.value)
  shape = workload.shape_for(size)
  with distributed.Watchdog(_TIMEOUT.value, f"process {_PROCESS_ID.value}'s job"):
    try:
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                             _LOCAL_DEVICES.value, _TIMEOUT.value)
      print(f"process {_PROCESS_ID.value} joined", file=sys.stderr, flush=True)
      result = jobs.run_sharded(workload, shape, _SEED.value, _REPEATS.value)
      distributed.shutdown()
    except Exception as e:  # noqa: BLE001 - a failed job is one line, whatever XLA raised
      # os._exit: a normal exit would run JAX's atexit shutdown, which waits for the dead peer.
      distributed.abort(f"process {_PROCESS_ID.value}: {type(e).__name__}: {e}")
  if result.process_id == 0:
    print(f"{workload.name} value+grads on {result.n_devices} devices in "
          f"{result.num_processes} processes ({result.sharding}), global shape "
          f"{report.shape_label(result.shape)}")
    print(f"value {result.value:.6f}; max relative error vs float64 NumPy "
          f"{result.max_rel_err:.2g}; vs one process on one device "
          f"{result.max_rel_diff_vs_single_process:.2g}")
    print(f"median per call {report.format_seconds(result.median_s)} ({_REPEATS.value} calls "
          f"per block, 5 blocks)")
    print("all processes agree with the single-process run" if result.ok else "DISAGREES")
    if _OUTPUT_JSON.value:
      report.atomic_write(_OUTPUT_JSON.value, json.dumps(result.__dict__, indent=2) + "\n")
  else:
    print(f"process {result.process_id}: {'agrees' if result.ok else 'DISAGREES'}")
  return 0 if result.ok else 1


def main(argv: list[str]) -> int:
  del argv
  if _LOCAL_PROCESSES.value:
    return _spawn(_LOCAL_PROCESSES.value)
  return _join()


if __name__ == "__main__":
  _cli.run(main)
