"""Moving a tensor to the GPU and back (tutorial: `x.to(torch.device('cuda'))`, `.to('cpu')`).

  python -m experiments.device_placement [--device=cuda] [--require_gpu]

Each `# jax:` line is the plain JAX call (funcgrad's helper named beside it). Without a GPU the
GPU steps are still shown, each marked as skipped with the reason (exit 0), unless --require_gpu.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from funcgrad import devices
from funcgrad.experiments import _cli

_DEVICE = flags.DEFINE_string(
    "device", "cuda", "Target device: cpu, cpu:N, cuda, cuda:N, gpu, gpu:N.")
_REQUIRE_GPU = flags.DEFINE_bool("require_gpu", False, "Exit non-zero when the device is absent.")

_CPU = devices.jax_expression("cpu")


def _where(x: jax.Array) -> str:
  return devices.describe_device(devices.device_of(x))


def _step(torch_idiom: str, jax_idiom: str, helper: str | None = None) -> None:
  beside = f"   (funcgrad: {helper})" if helper else ""
  print(f"# torch: {torch_idiom}\n# jax:   {jax_idiom}{beside}")


def main(argv: list[str]) -> int:
  del argv
  spec = _DEVICE.value
  try:
    target = devices.resolve_device(spec)  # a malformed spec fails here, before output
  except devices.DeviceUnavailableError as e:
    if _REQUIRE_GPU.value:
      raise
    target, skipped = None, e
  where = devices.jax_expression(spec)
  _step("cpu_tensor = torch.zeros(2, 3)",
        f"cpu_tensor = jax.device_put(jnp.zeros((2, 3)), {_CPU})", "zeros((2, 3), device='cpu')")
  cpu_tensor = jax.device_put(jnp.zeros((2, 3)), jax.devices("cpu")[0])
  print(f"cpu_tensor on {_where(cpu_tensor)}:\n{cpu_tensor}\n")
  _step(f"device = torch.device({spec!r})",
        f"device = {where}", f"resolve_device({spec!r})")
  if target is None:
    print(f"skipped: {skipped}\n")
  else:
    print(f"device = {devices.describe_device(target)}\n")
  _step("gpu_tensor = cpu_tensor.to(device)", "gpu_tensor = jax.device_put(cpu_tensor, device)",
        f"put(cpu_tensor, {spec!r})")
  if target is None:
    print(f"skipped: no {spec!r} device here\n")
  else:
    moved = jax.device_put(cpu_tensor, target)
    print(f"gpu_tensor on {_where(moved)}:\n{moved}\n")
  _step("cpu_tensor_back = gpu_tensor.to(torch.device('cpu'))",
        f"cpu_tensor_back = jax.device_put(gpu_tensor, {_CPU})",
        "put(gpu_tensor, 'cpu'); to NumPy: to_host(gpu_tensor), jax.device_get")
  if target is None:
    print(f"skipped: no {spec!r} device here")
    return 0
  back = jax.device_put(moved, jax.devices("cpu")[0])
  print(f"cpu_tensor_back on {_where(back)}:\n{back}")
  if not np.array_equal(jax.device_get(back), jax.device_get(cpu_tensor)):
    print("round trip changed the values")
    return 1
  return 0


if __name__ == "__main__":
  _cli.run(main)
