"""One sharded value+grads across processes with jax.distributed (gloo on CPU, NCCL on GPU).

Join a job (one process per host on a cluster):
  python -m experiments.distributed --coordinator=HOST:PORT --num_processes=P --process_id=I
Or spawn P local processes on 127.0.0.1 (loopback only) with a free port:
  python -m experiments.distributed --local_processes=2 [--local_devices=2]

Process 0 gathers the outputs and prints them with the timing; every process checks them against
a float64 NumPy reference and an unsharded single-device run. A process that dies or never joins
makes the others exit within --timeout with one clear line.

Process 0's coordinator listens only on the --coordinator address, and anyone who can reach it
can join the job (it has no authentication): see "Who can join a job" in docs/SCALING.md.
"""

import sys

import numpy as np
from absl import flags

from funcgrad import distributed, limits, outputs
from funcgrad.bench import jobs, report, workloads
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli
from funcgrad.shapes import parse_shape

_COORDINATOR = flags.DEFINE_string("coordinator", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.",
                                      lower_bound=1, upper_bound=65536)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..P-1.",
                                   lower_bound=0)
_LOCAL_PROCESSES = flags.DEFINE_integer("local_processes", None, "Spawn this many processes on "
                                        "127.0.0.1 (a free port, loopback only) and run the job.",
                                        lower_bound=1, upper_bound=64)
_LOCAL_DEVICES = flags.DEFINE_integer("local_devices", 2, "CPU devices per process.",
                                      lower_bound=1, upper_bound=1024)
_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_SIZE = flags.DEFINE_string("size", "64x32", "Global input size (NxD, or N for 1-D workloads).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs (the same in every process).",
                             lower_bound=0, upper_bound=_cli.MAX_SEED)
_REPEATS = flags.DEFINE_integer("repeats", 20, "Calls per timed block.", lower_bound=1,
                                upper_bound=1_000_000)
_TIMEOUT = flags.DEFINE_integer("timeout", 60, "Seconds before a stuck job gives up.",
                                lower_bound=1, upper_bound=86_400)
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Process 0 writes its result here.")


def _forwarded_flags() -> list[str]:
  return [*_settings(), f"--timeout={_TIMEOUT.value}",
          *([f"--output_json={_OUTPUT_JSON.value}"] if _OUTPUT_JSON.value else [])]


def _settings() -> list[str]:
  """The flags every process of a job must agree on."""
  return [f"--local_devices={_LOCAL_DEVICES.value}", f"--workload={_WORKLOAD.value}",
          f"--size={_SIZE.value}", f"--seed={_SEED.value}", f"--repeats={_REPEATS.value}"]


def _spawn(count: int) -> int:
  _check_size()  # once here, not in every child
  _cli.on_interrupt(lambda: f"stopped the {count} local processes")
  print(distributed.run_local_job(count, "funcgrad.experiments.distributed", _forwarded_flags(),
                                  _TIMEOUT.value + 30), end="")
  return 0


def _check_size() -> tuple[workloads.Workload, tuple[int, ...]]:
  """The workload and global shape; refused when every process's global inputs, outputs and
  float64 reference would not fit (each process on a machine builds them all)."""
  workload = workloads.get_workload(_WORKLOAD.value)
  shape = workload.shape_for(parse_shape(_SIZE.value, "--size", max_rank=2))
  n = workload.n_inputs or 3
  processes = _LOCAL_PROCESSES.value or 1
  limits.check_memory(processes * (limits.array_bytes(shape, np.float32, 3 * n + 1)
                                   + limits.array_bytes(shape, np.float64, 2 * n + 1)),
                      f"--size={_SIZE.value}" + (f" with --local_processes={processes}"
                                                 if processes > 1 else ""))
  return workload, shape


def _join() -> int:
  if _COORDINATOR.value is None or _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
    raise UsageError("Pass --coordinator, --num_processes and --process_id to join a job, or "
                     "--local_processes=P to run one here.")
  workload, shape = _check_size()
  with distributed.Watchdog(_TIMEOUT.value, f"process {_PROCESS_ID.value}'s job"):
    try:
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                             _LOCAL_DEVICES.value, _TIMEOUT.value)
      print(f"process {_PROCESS_ID.value} joined", file=sys.stderr, flush=True)
      distributed.check_same_flags(_settings(), _PROCESS_ID.value)
      result = jobs.run_sharded(workload, shape, _SEED.value, _REPEATS.value)
      distributed.shutdown()
    except UsageError as e:
      if not isinstance(e, distributed.JobError):
        raise  # a bad flag, before JAX started: exit 2 like any other script
      distributed.abort(f"process {_PROCESS_ID.value}: {e}")
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
      outputs.atomic_write(_OUTPUT_JSON.value, outputs.dumps(result.__dict__) + "\n")
  else:
    print(f"process {result.process_id}: {'agrees' if result.ok else 'DISAGREES'}")
  return 0 if result.ok else 1


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value})
  if _LOCAL_PROCESSES.value:
    return _spawn(_LOCAL_PROCESSES.value)
  return _join()


if __name__ == "__main__":
  _cli.run(main)
