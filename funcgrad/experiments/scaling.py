"""Strong and weak scaling of jit(value+grads) over 1, 2, 4, 8 devices.

  python -m experiments.scaling [--simulate_cpu_devices=8] [--workload=muladd_sum]
      [--size=2048x512] [--device_counts=1,2,4,8] [--output_json=PATH]

On a CPU the devices are simulated (they share the same cores and memory): the table shows what
sharding costs there, not a speed-up. On a multi-GPU machine the same command measures real
scaling.
"""

from typing import Any

import numpy as np
from absl import flags

from funcgrad import limits, outputs, sharding
from funcgrad.bench import scaling as scaling_lib
from funcgrad.bench import workloads
from funcgrad.bench.machine import machine_document
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli, _flags
from funcgrad.shapes import parse_ints, parse_shape

MAX_DEVICES = 1024

_SIMULATE = flags.DEFINE_integer("simulate_cpu_devices", 8, "CPU devices to simulate (set "
                                 "before JAX starts); 0 = use the real devices.", lower_bound=0,
                                 upper_bound=MAX_DEVICES)
_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_SIZE = flags.DEFINE_string("size", "2048x512", "Strong-scaling size; weak scaling starts here.")
_COUNTS = flags.DEFINE_list("device_counts", ["1", "2", "4", "8"], "Device counts to run.")
_BACKEND = flags.DEFINE_enum("backend", "cpu", ["cpu", "gpu"], "Backend whose devices to use.")
_MIN_RUN_TIME = _flags.define_min_run_time(0.2, "per row")
_OUTPUT_JSON = _flags.define_output_json("{machine, strong, weak, complete}")
_ALLOCATOR = _flags.define_allocator()


def _counts() -> list[int]:
  counts = parse_ints(",".join(_COUNTS.value), "--device_counts")  # duplicates dropped
  if not all(1 <= c <= MAX_DEVICES for c in counts):
    raise UsageError(f"Invalid --device_counts={','.join(_COUNTS.value)}: each count must be in "
                     f"1..{MAX_DEVICES}.")
  return counts


def main(argv: list[str]) -> int:
  del argv
  _cli.check_outputs({"--output_json": _OUTPUT_JSON.value})
  _cli.restart_as_asked(_ALLOCATOR.value)
  counts = _counts()
  workload = workloads.get_workload(_WORKLOAD.value)
  size = parse_shape(_SIZE.value, "--size", max_rank=2)
  base = workload.shape_for(size)
  # Weak scaling grows the inputs with the device count: the largest case, every input and output
  # once, its float64 reference and a gathered copy.
  largest = (base[0] * max(counts), *base[1:])
  limits.check_memory(limits.array_bytes(largest, np.float32, 3 * workload.n_inputs + 2)
                      + limits.array_bytes(largest, np.float64, 2 * workload.n_inputs),
                      f"--size={_SIZE.value} --device_counts={','.join(map(str, counts))}")
  if _SIMULATE.value:
    sharding.set_cpu_device_count(_SIMULATE.value)  # after the checks, before JAX starts
  run = outputs.RunOutputs({"--output_json": (_OUTPUT_JSON.value, _document)},
                           noun="scaling row")
  _cli.on_interrupt(run.interrupted)  # Ctrl-C, SIGTERM, SIGHUP: the finished phase is kept
  strong = scaling_lib.scaling_rows(workload, base, counts, False, _MIN_RUN_TIME.value,
                                    _BACKEND.value)
  for row in strong:
    run.add(("strong", row))
  weak = scaling_lib.scaling_rows(workload, base, counts, True, _MIN_RUN_TIME.value,
                                  _BACKEND.value)
  for row in weak:
    run.add(("weak", row))
  print(scaling_lib.render(strong, weak))
  run.finish()
  return run.report_failures(0 if all(r.ok for r in strong + weak) else 1)


def _document(rows: list[tuple[str, Any]], complete: bool) -> str:
  """`{machine, strong, weak, complete}`: `complete` is false when a signal stopped the run."""
  document = {"machine": machine_document(),
              "strong": [r.to_dict() for kind, r in rows if kind == "strong"],
              "weak": [r.to_dict() for kind, r in rows if kind == "weak"], "complete": complete}
  return outputs.dumps(document) + "\n"


if __name__ == "__main__":
  _cli.run(main)
