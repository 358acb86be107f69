"""Strong and weak scaling of jit(value+grads) over 1, 2, 4, 8 devices.

  python -m experiments.scaling [--simulate_cpu_devices=8] [--workload=muladd_sum]
      [--size=2048x512] [--device_counts=1,2,4,8] [--output_json=PATH]

On a CPU the devices are simulated (they share the same cores and memory): the table shows what
sharding costs there, not a speed-up. On a multi-GPU machine the same command measures real
scaling.
"""

import json

from absl import flags

from experiments import _cli
from funcgrad import allocator, sharding
from funcgrad.bench import report, specs, workloads
from funcgrad.bench import scaling as scaling_lib
from funcgrad.bench.machine import machine_info
from funcgrad.errors import UsageError

_SIMULATE = flags.DEFINE_integer("simulate_cpu_devices", 8, "CPU devices to simulate (set "
                                 "before JAX starts); 0 = use the real devices.", lower_bound=0)
_WORKLOAD = flags.DEFINE_enum("workload", "muladd_sum", list(workloads.TUTORIAL_WORKLOADS),
                              "Workload.")
_SIZE = flags.DEFINE_string("size", "2048x512", "Strong-scaling size; weak scaling starts here.")
_COUNTS = flags.DEFINE_list("device_counts", ["1", "2", "4", "8"], "Device counts to run.")
_BACKEND = flags.DEFINE_enum("backend", "cpu", ["cpu", "gpu"], "Backend whose devices to use.")
_MIN_RUN_TIME = flags.DEFINE_float("min_run_time", 0.2, "Seconds of timed blocks per row.",
                                   lower_bound=0.0)
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Write {machine, strong, weak} here.")
_ALLOCATOR = _cli.define_allocator_flag()


def main(argv: list[str]) -> int:
  del argv
  allocator.reexec_with(_ALLOCATOR.value)
  if _SIMULATE.value:
    sharding.set_cpu_device_count(_SIMULATE.value)
  counts = []
  for text in _COUNTS.value:
    if not text.isdigit() or int(text) < 1:
      raise UsageError(f"Invalid device count {text!r} in --device_counts: positive integers.")
    counts.append(int(text))
  workload = workloads.get_workload(_WORKLOAD.value)
  (size,) = specs.parse_sizes(_SIZE.value)
  base = workload.shape_for(size)
  strong = scaling_lib.scaling_rows(workload, base, counts, False, _MIN_RUN_TIME.value,
                                    _BACKEND.value)
  weak = scaling_lib.scaling_rows(workload, base, counts, True, _MIN_RUN_TIME.value,
                                  _BACKEND.value)
  print(scaling_lib.render(strong, weak))
  if _OUTPUT_JSON.value:
    document = {"machine": machine_info(), "strong": [r.to_dict() for r in strong],
                "weak": [r.to_dict() for r in weak]}
    report.atomic_write(_OUTPUT_JSON.value, json.dumps(document, indent=2) + "\n")
  return 0 if all(r.ok for r in strong + weak) else 1


if __name__ == "__main__":
  _cli.run(main)
