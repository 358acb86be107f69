"""Creating tensors, torch idiom by torch idiom, and `requires_grad` as `argnums`.

  python -m experiments.tensors [--dtype=float32] [--device=cpu] [--seed=0]
"""

import jax
import jax.numpy as jnp
from absl import flags

from funcgrad import devices, tensors
from funcgrad.dtypes import resolve_dtype
from funcgrad.errors import UsageError
from funcgrad.experiments import _cli

_DTYPE = flags.DEFINE_string(
    "dtype", "float32", "dtype for the float examples (any torch/NumPy name).")
_DEVICE = flags.DEFINE_string("device", "cpu", "Device spec: cpu, cpu:N, cuda, cuda:N, gpu, gpu:N.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the PRNG key for randn.", lower_bound=0,
                             upper_bound=_cli.MAX_SEED)


def _show(torch_idiom: str, jax_idiom: str, value: jax.Array) -> None:
  print(f"# torch: {torch_idiom}\n# jax:   {jax_idiom}")
  where = devices.describe_device(devices.device_of(value))
  print(f"{value}  dtype={value.dtype} device={where}\n")


def main(argv: list[str]) -> None:
  del argv
  dtype, device = _DTYPE.value, _DEVICE.value
  # Fail on a bad --dtype or --device before printing anything.
  if not jnp.issubdtype(resolve_dtype(dtype), jnp.floating):
    raise UsageError(f"--dtype={dtype!r} is not a float dtype; randn and gradients need one "
                     "(float32, float16, bfloat16, or float64 with x64).")
  devices.resolve_device(device)
  _show("torch.zeros(2, 3)", f"zeros((2, 3), {dtype!r}, {device!r})",
        tensors.zeros((2, 3), dtype, device))
  print("# torch: torch.Tensor(2, 3)  (uninitialised memory)\n# jax:   empty((2, 3))")
  print(f"shape={tensors.empty((2, 3), dtype, device).shape}: contents unspecified (zeros before "
        f"JAX 0.11, uninitialised from 0.11; running jax {jax.__version__})\n")
  _show("torch.tensor([[1, 2, 3], [4, 5, 6]])", "tensor([[1, 2, 3], [4, 5, 6]])",
        tensors.tensor([[1, 2, 3], [4, 5, 6]], device=device))
  key = jax.random.key(_SEED.value)
  _show("torch.manual_seed(s); torch.randn(2, 3)", f"randn(jax.random.key({_SEED.value}), (2, 3))",
        tensors.randn(key, (2, 3), dtype, device))
  again = tensors.randn(key, (2, 3), dtype, device)
  print(f"same key again -> identical numbers: "
        f"{bool(jnp.array_equal(again, tensors.randn(key, (2, 3), dtype, device)))}\n")
  _, key_b = jax.random.split(key)
  _show("(the next draw from torch's global generator)",
        "_, key_b = jax.random.split(key); randn(key_b, (2, 3))",
        tensors.randn(key_b, (2, 3), dtype, device))

  print("# torch: x = torch.tensor([1., 2.], requires_grad=True); y = torch.tensor([3., 4.])")
  print("#        (x * y).sum().backward(); x.grad")
  print("# jax:   value_and_grad_wrt(lambda x, y: (x * y).sum(), argnums=0)(x, y)")
  f = tensors.value_and_grad_wrt(lambda x, y: (x * y).sum(), argnums=0)
  x, y = tensors.tensor([1.0, 2.0], dtype, device), tensors.tensor([3.0, 4.0], dtype, device)
  value, grad_x = f(x, y)
  print(f"value={value} grad_x={grad_x}  (= y)")
  try:
    f(tensors.tensor([1, 2], device=device), y)
  except TypeError as e:
    print(f"with an integer x: TypeError: {e}")


if __name__ == "__main__":
  _cli.run(main)
