"""The tutorial's gradients, each printed beside its closed form; exit 1 if any disagrees.

  python -m experiments.gradients [--n=3] [--d=4] [--seed=0]

Part 1, c = sum(x*y + z): hand-written NumPy backprop (the tutorial's NumPy cell, with its swapped
grad_x/grad_y fixed), `jax.value_and_grad` run eagerly (PyTorch's dynamic graph) and under
`jax.jit` (TensorFlow 1's static graph). Part 2: the first autograd example, whose answer is
[8, 12], plus the gradients at the intermediates that torch reports as None.
"""

import jax
import numpy as np
from absl import flags

from funcgrad import grads, limits
from funcgrad.experiments import _cli

_N = flags.DEFINE_integer("n", 3, "Rows of x, y, z.", lower_bound=1)
_D = flags.DEFINE_integer("d", 4, "Columns of x, y, z.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "NumPy seed for x, y, z (the tutorial used 0).",
                             lower_bound=0, upper_bound=_cli.MAX_SEED)

RTOL, ATOL = 1e-5, 1e-6


def _check(label: str, got, want) -> bool:
  ok = all(np.allclose(np.asarray(g), np.asarray(w), rtol=RTOL, atol=ATOL)
           for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True))
  print(f"  {'ok  ' if ok else 'FAIL'} {label}")
  return ok


def _muladd_sum_part(n: int, d: int, seed: int) -> bool:
  rng = np.random.RandomState(seed)  # the tutorial's np.random.seed(0); np.random.randn(N, D)
  x, y, z = (rng.randn(n, d).astype(np.float32) for _ in range(3))
  want = grads.muladd_sum_closed_form(x, y, z)
  print(f"c = sum(x*y + z) for {n}x{d} inputs (seed {seed}); closed form: dc/dx = y, dc/dy = x, "
        "dc/dz = 1")
  print("# torch: c = torch.sum(x * y + z); c.backward(); x.grad, y.grad, z.grad\n"
        "# jax:   jax.value_and_grad(lambda x, y, z: jnp.sum(x * y + z), argnums=(0, 1, 2))"
        "(x, y, z)   (funcgrad: muladd_sum_grads(x, y, z))")
  print(f"  value {float(want[0]):.6f}\n  grad_x (= y)\n{want[1][0]}")
  print(f"  grad_y (= x; with seed 0, what the tutorial printed as grad_x)\n{want[1][1]}")
  results = [
      _check("numpy hand-written backprop", grads.muladd_sum_grads_numpy(x, y, z), want),
      _check("jax eager value_and_grad", grads.muladd_sum_grads(x, y, z), want),
      _check("jax.jit value_and_grad", jax.jit(grads.muladd_sum_grads)(x, y, z), want),
  ]
  print("  (the tutorial's NumPy cell computed grad_x = x and grad_y = y: swapped)\n")
  return all(results)


def _abs_loss_part() -> bool:
  x, target = np.array([2.0, 3.0], np.float32), np.array([3.0, 4.0], np.float32)
  got = grads.intermediate_grads(x, target)
  print("loss = sum(|2x^2 + 3 - target|), x = [2, 3], target = [3, 4]")
  print("# torch: loss = torch.sum(torch.abs(2 * x**2 + 3 - target)); loss.backward(); x.grad\n"
        "# jax:   jax.grad(lambda x: jnp.sum(jnp.abs(2 * x**2 + 3 - target)))(x)   "
        "(funcgrad: abs_loss_grad(x, target))")
  print(f"  loss {float(got.loss)}   x.grad {got.x}   (torch: tensor([ 8., 12.]))")
  print(f"  dloss/dy {got.y}   dloss/dz {got.z}   (torch: None None, not leaves)")
  sign = np.sign(2 * x**2 + 3 - target)
  return all([
      _check("abs_loss_grad == [8, 12]",
             grads.abs_loss_grad(x, target), [np.array([8.0, 12.0])]),
      _check("abs_loss_grad == 4 x sign(2x^2 + 3 - target)", grads.abs_loss_grad(x, target),
             grads.abs_loss_grad_closed_form(x, target)),
      _check("dloss/dz == sign(z - target), dloss/dy == 2 sign(...)", (got.z, got.y),
             (sign, 2 * sign)),
      _check("dloss/dx via vjp chain == jax.grad", got.x, grads.abs_loss_grad(x, target)),
  ])


def main(argv: list[str]) -> int:
  del argv
  # x, y, z in float64 then float32, the closed form, and three runs' outputs (value + 3 grads).
  limits.check_memory(limits.array_bytes((_N.value, _D.value), np.float64, 3)
                      + limits.array_bytes((_N.value, _D.value), np.float32, 15),
                      f"--n={_N.value} --d={_D.value}")
  ok = _muladd_sum_part(_N.value, _D.value, _SEED.value)
  ok = _abs_loss_part() and ok
  print("\nall gradients agree with their closed forms" if ok else "\nSOME GRADIENTS DISAGREE")
  return 0 if ok else 1


if __name__ == "__main__":
  _cli.run(main)
