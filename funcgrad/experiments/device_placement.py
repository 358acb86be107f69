"""Moving a tensor to the GPU and back (tutorial: `x.to(torch.device('cuda'))`, `.to('cpu')`).

  python -m experiments.device_placement [--device=cuda] [--require_gpu]

Without a GPU the GPU leg is skipped with a plain message (exit 0), unless --require_gpu.
"""

import numpy as np
from absl import flags

from funcgrad import devices, tensors
from funcgrad.experiments import _cli

_DEVICE = flags.DEFINE_string(
    "device", "cuda", "Target device: cpu, cpu:N, cuda, cuda:N, gpu, gpu:N.")
_REQUIRE_GPU = flags.DEFINE_bool("require_gpu", False, "Exit non-zero when the device is absent.")


def _where(x) -> str:
  return devices.describe_device(devices.device_of(x))


def main(argv: list[str]) -> int:
  del argv
  try:
    target = devices.resolve_device(_DEVICE.value)  # a malformed spec fails here, before output
  except devices.DeviceUnavailableError as e:
    if _REQUIRE_GPU.value:
      raise
    target, skipped = None, e
  cpu_tensor = tensors.zeros((2, 3), device="cpu")
  print("# torch: cpu_tensor = torch.zeros(2, 3)")
  print(f"cpu_tensor on {_where(cpu_tensor)}:\n{cpu_tensor}\n")
  if target is None:
    print(f"skipped the {_DEVICE.value!r} leg: {skipped}")
    return 0
  moved = devices.put(cpu_tensor, target)
  print(f"# torch: gpu_tensor = cpu_tensor.to(torch.device({_DEVICE.value!r}))")
  print(f"# jax:   moved = put(cpu_tensor, {_DEVICE.value!r})  (jax.device_put)")
  print(f"moved to {_where(moved)}:\n{moved}\n")
  back = devices.to_host(moved)
  print("# torch: cpu_tensor_back = gpu_tensor.to(torch.device('cpu'))")
  print(f"# jax:   back = to_host(moved)  (jax.device_get -> numpy)\nback on the host as "
        f"{type(back).__name__}:\n{back}")
  if not np.array_equal(back, devices.to_host(cpu_tensor)):
    print("round trip changed the values")
    return 1
  return 0


if __name__ == "__main__":
  _cli.run(main)
