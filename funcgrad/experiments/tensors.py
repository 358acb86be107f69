"""Creating tensors, torch idiom by torch idiom, and `requires_grad` as `argnums`.

  python -m experiments.tensors [--dtype=float32] [--device=cpu] [--seed=0]

Each `# jax:` line is the plain JAX call that made the value printed under it (funcgrad's helper,
which also takes torch's dtype and device names, is named beside it).
"""

import jax
import jax.numpy as jnp
import numpy as np
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

_F = "lambda x, y: (x * y).sum()"


def _show(torch_idiom: str, jax_idiom: str, helper: str, value: jax.Array) -> None:
  print(f"# torch: {torch_idiom}\n# jax:   {jax_idiom}   (funcgrad: {helper})")
  where = devices.describe_device(devices.device_of(value))
  print(f"{value}  dtype={value.dtype} device={where}\n")


class _Placement:
  """Writes and does the plain JAX placement: nothing on JAX's default device, else device_put."""

  def __init__(self, spec: str):
    self.device = devices.resolve_device(spec)
    self.default = self.device == jax.devices()[0]
    self.expression = devices.jax_expression(spec)

  def code(self, expression: str) -> str:
    return expression if self.default else f"jax.device_put({expression}, {self.expression})"

  def __call__(self, value: jax.Array) -> jax.Array:
    return value if self.default else jax.device_put(value, self.device)


def _creation(dtype_name: str, device: str, seed: int) -> None:
  dtype, place = resolve_dtype(dtype_name), _Placement(device)
  jnp_dtype = f"jnp.{dtype.name}"
  args = f"{dtype_name!r}, {device!r}"
  _show("torch.zeros(2, 3)", place.code(f"jnp.zeros((2, 3), {jnp_dtype})"),
        f"zeros((2, 3), {args})", place(jnp.zeros((2, 3), dtype)))
  print(f"# torch: torch.Tensor(2, 3)  (uninitialised memory)\n"
        f"# jax:   {place.code(f'jnp.empty((2, 3), {jnp_dtype})')}   (funcgrad: empty((2, 3)))")
  print(f"shape={place(jnp.empty((2, 3), dtype)).shape}: contents unspecified (zeros before "
        f"JAX 0.11, uninitialised from 0.11; running jax {jax.__version__})\n")
  _show("torch.tensor([[1, 2, 3], [4, 5, 6]])", place.code("jnp.array([[1, 2, 3], [4, 5, 6]])"),
        "tensor([[1, 2, 3], [4, 5, 6]])", place(jnp.array([[1, 2, 3], [4, 5, 6]])))
  key = jax.random.key(seed)
  dtype_arg = "" if dtype == np.float32 else f", {jnp_dtype}"
  normal = place.code(f"jax.random.normal(key, (2, 3){dtype_arg})")
  _show("torch.manual_seed(s); torch.randn(2, 3)", f"key = jax.random.key({seed}); {normal}",
        "randn(key, (2, 3))", place(jax.random.normal(key, (2, 3), dtype)))
  draw = jax.random.normal(key, (2, 3), dtype)
  same = jnp.array_equal(draw, jax.random.normal(key, (2, 3), dtype))
  print(f"same key again -> identical numbers: {bool(same)}\n")
  _, key_b = jax.random.split(key)
  normal_b = place.code(f"jax.random.normal(key_b, (2, 3){dtype_arg})")
  _show("(the next draw from torch's global generator)",
        f"_, key_b = jax.random.split(key); {normal_b}",
        "randn(key_b, (2, 3))", place(jax.random.normal(key_b, (2, 3), dtype)))


def _gradients(dtype_name: str, device: str) -> None:
  dtype, place = resolve_dtype(dtype_name), _Placement(device)
  x, y = place(jnp.array([1.0, 2.0], dtype)), place(jnp.array([3.0, 4.0], dtype))
  print("# torch: x = torch.tensor([1., 2.], requires_grad=True); y = torch.tensor([3., 4.])\n"
        "#        (x * y).sum().backward(); x.grad")
  print(f"# jax:   jax.value_and_grad({_F}, argnums=0)(x, y)   "
        "(funcgrad: value_and_grad_wrt(f, argnums=0))")
  value, grad_x = jax.value_and_grad(lambda x, y: (x * y).sum(), argnums=0)(x, y)
  print(f"value={value} grad_x={grad_x}  (= y)\n")
  print("# torch: requires_grad=True on x and on y; x.grad, y.grad")
  print(f"# jax:   jax.value_and_grad({_F}, argnums=(0, 1))(x, y)   "
        "(funcgrad: value_and_grad_wrt(f, argnums=(0, 1)))")
  value, (grad_x, grad_y) = jax.value_and_grad(lambda x, y: (x * y).sum(), argnums=(0, 1))(x, y)
  print(f"value={value} grad_x={grad_x} grad_y={grad_y}  (= y, x)\n")
  integer_x = place(jnp.array([1, 2]))
  try:
    jax.value_and_grad(lambda x, y: (x * y).sum())(integer_x, y)
  except TypeError as e:
    print(f"with an integer x, jax.value_and_grad: TypeError: {str(e).splitlines()[0]}")
  try:
    tensors.value_and_grad_wrt(lambda x, y: (x * y).sum(), argnums=0)(integer_x, y)
  except TypeError as e:
    print(f"and funcgrad.value_and_grad_wrt: TypeError: {e}")


def main(argv: list[str]) -> None:
  del argv
  dtype, device = _DTYPE.value, _DEVICE.value
  # Fail on a bad --dtype or --device before printing anything.
  if not jnp.issubdtype(resolve_dtype(dtype), jnp.floating):
    raise UsageError(f"--dtype={dtype!r} is not a float dtype; randn and gradients need one "
                     "(float32, float16, bfloat16, or float64 with x64).")
  devices.resolve_device(device)
  _creation(dtype, device, _SEED.value)
  _gradients(dtype, device)


if __name__ == "__main__":
  _cli.run(main)
