"""How a user's function is checked before it is timed: against what, and how closely.

What a row is checked against (`check=`):

- `"float64"`: a float64 re-run of the function (inexact leaves cast to float64 under
  `jax.experimental.enable_x64`; integer, bool and key leaves as they are), and its float64
  gradients against a float64 central finite difference of its value along one random direction
  (so that a gradient wrong in every dtype, a bad `custom_vjp`, is caught too). Only a
  deterministic function can be checked this way: a random draw in float64 gives different
  numbers.
- `"eager"`: the function run eagerly in its own dtypes, with the same keys (the same numbers);
  for a value-and-gradient workload its gradients are also checked against a central finite
  difference of its value along one random direction, with the same keys, so that a gradient
  that is wrong in every engine alike is still caught.
- `"none"`: no check (the row says so).
- `"auto"` (the default): `"eager"` for a random function, else `"float64"`.

A function is random when a typed PRNG key is among its array leaves, or when its jaxpr (and the
jaxprs inside it: `jit`, `scan`, `cond`, custom derivatives) holds a PRNG primitive
(`random_bits`, `random_wrap`, `random_split`, `random_fold_in`, `threefry2x32`,
`rng_bit_generator`, ...). A legacy `uint32[2]` key is seen through the `random_wrap` that
`jax.random` puts in front of it.

Tolerances follow the dtype JAX computes in (the lowest precision among the inexact outputs:
a float64 input while x64 is off computes in float32), allclose-style: an output passes when
`|got - want| <= atol + rtol * max|want|` holds for every element. `rtol` is measured against the
output's largest magnitude, not each element's, because a gradient's near-zero elements carry the
rounding error of its largest terms; `atol` lets a near-zero output (a saturated gradient)
pass on absolute error.
"""

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad._compat import enable_x64
from funcgrad.errors import UsageError

CHECKS = ("auto", "float64", "eager", "none")

# (rtol, atol) per dtype a function computes in: a few hundred ulps of rtol for a deep function.
TOLERANCES = {
    "bfloat16": (5e-2, 1e-3),
    "float16": (1e-2, 1e-4),
    "float32": (1e-4, 1e-6),
    "float64": (1e-9, 1e-12),
}

RANDOM_PRIMITIVE_PREFIXES = ("random_", "threefry", "rng_")

# Finite differences: relative agreement asked of the directional derivative.
FD_RTOL = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Tolerance:
  """allclose-style tolerances: pass when `|got - want| <= atol + rtol * max|want|`."""

  rtol: float
  atol: float

  def describe(self) -> str:
    return f"rtol={self.rtol:g}, atol={self.atol:g}"


def resolve_check(check: str, random: bool) -> str:
  """The check actually run: `auto` becomes `eager` for a random function, else `float64`.

  Raises:
    UsageError: `check` is not one of CHECKS.
  """
  if check not in CHECKS:
    raise UsageError(f"check={check!r} is not a check; allowed: {', '.join(map(repr, CHECKS))}.")
  if check == "auto":
    return "eager" if random else "float64"
  return check


def compute_dtype(outputs: Any) -> np.dtype:
  """The dtype a function computes in: the lowest-precision inexact leaf of its outputs (float32
  where it has none)."""
  dtypes = [np.dtype(leaf.dtype) for leaf in jax.tree.leaves(outputs)
            if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
            and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)]
  if not dtypes:
    return np.dtype(np.float32)
  return max(dtypes, key=lambda d: float(jnp.finfo(d).eps))


def tolerance_for(dtype: Any, rtol: float | None = None, atol: float | None = None) -> Tolerance:
  """The default tolerances of `dtype` (real part for complex), with `rtol`/`atol` overrides.

  Raises:
    UsageError: a negative or non-finite `rtol` or `atol`.
  """
  dtype = np.dtype(dtype)
  name = jnp.finfo(dtype).dtype.name if jnp.issubdtype(dtype, jnp.complexfloating) else dtype.name
  default_rtol, default_atol = TOLERANCES.get(name, TOLERANCES["float32"])
  for label, value in (("rtol", rtol), ("atol", atol)):
    if value is not None and not (isinstance(value, int | float) and np.isfinite(value)
                                  and value >= 0):
      raise UsageError(f"{label}={value!r} must be a finite number >= 0.")
  return Tolerance(default_rtol if rtol is None else float(rtol),
                   default_atol if atol is None else float(atol))


def allclose_error(outputs: Sequence[Any], reference: Sequence[Any], tol: Tolerance) -> float:
  """max over outputs and elements of `|got - want| / (atol + rtol * max|want|)`: <= 1 passes.

  NaN where the reference has NaN counts as equal; NaN or inf elsewhere is infinitely wrong.

  Raises:
    ValueError: the outputs' count or shapes differ from the reference's (an engine bug).
  """
  if len(outputs) != len(reference):
    raise ValueError(f"Expected {len(reference)} outputs, got {len(outputs)}")
  worst = 0.0
  for got, want in zip(outputs, reference, strict=True):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
      raise ValueError(f"Output shape {got.shape} != reference shape {want.shape}")
    if not got.size:
      continue
    finite = np.isfinite(want)
    scale = float(np.max(np.abs(want[finite]))) if finite.any() else 0.0
    allowed = tol.atol + tol.rtol * scale
    with np.errstate(invalid="ignore", over="ignore"):
      diff = np.abs(got - want)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    diff = np.where(same, 0.0, np.where(np.isfinite(diff), diff, np.inf))
    err = float(np.max(diff))
    worst = max(worst, err / allowed if allowed > 0 else (0.0 if err == 0 else np.inf))
  return worst


# --------------------------------------------------------------------------------- randomness


def _subjaxprs(value: Any) -> Iterator[Any]:
  if hasattr(value, "eqns"):
    yield value
  elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    yield value.jaxpr
  elif isinstance(value, tuple | list):
    for v in value:
      yield from _subjaxprs(v)


def primitives(jaxpr: Any) -> set[str]:
  """The names of every primitive in `jaxpr` and in the jaxprs its equations hold."""
  names, stack = set(), [jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr]
  while stack:
    for eqn in stack.pop().eqns:
      names.add(eqn.primitive.name)
      for param in eqn.params.values():
        stack.extend(_subjaxprs(param))
  return names


def random_primitives(fn: Callable[..., Any], *args: Any) -> set[str]:
  """The PRNG primitives `fn(*args)` runs (empty for a deterministic function)."""
  names = primitives(jax.make_jaxpr(fn)(*args))
  return {n for n in names if n.startswith(RANDOM_PRIMITIVE_PREFIXES)}


def has_typed_key(tree: Any) -> bool:
  """Whether a typed PRNG key array is among the leaves of `tree`."""
  return any(hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
             for leaf in jax.tree.leaves(tree))


def is_random(fn: Callable[..., Any], *args: Any) -> bool:
  """Whether `fn(*args)` draws random numbers (a key among its inputs, or PRNG primitives)."""
  return has_typed_key(args) or bool(random_primitives(fn, *args))


# ------------------------------------------------------------------------------ the references


def widen(tree: Any) -> Any:
  """`tree` with its inexact leaves cast to float64 (complex128); call under `enable_x64`."""
  def widen(leaf):
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact) and \
        not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      wide = jnp.complex128 if jnp.issubdtype(leaf.dtype, jnp.complexfloating) else jnp.float64
      return jnp.asarray(leaf, wide)
    return leaf

  return jax.tree.map(widen, tree)


def float64_outputs(program: Callable[..., Any], *args: Any) -> Any:
  """`program` compiled and run in float64 on float64 copies of the inexact leaves of `args`."""
  with enable_x64():
    return jax.device_get(jax.jit(program)(*widen(args)))


def directional_check(value_fn: Callable[[list[Any]], Any], diff: Sequence[Any],
                      grads: Sequence[Any], seed: int = 0) -> tuple[bool, str]:
  """Checks gradients against a central finite difference of the value along a random direction.

  `value_fn(diff)` must be deterministic (the same keys every call); it runs in the leaves' own
  dtype. The step is `eps**(1/3)` of the leaves' largest magnitude (at least `eps**(1/3)`).

  Returns:
    (passed, a sentence saying what was compared). An inconclusive comparison (the directional
    derivative below the finite difference's rounding noise) passes and says so.
  """
  rng = np.random.default_rng(seed)
  dtype = compute_dtype(list(diff))
  eps = float(jnp.finfo(dtype).eps)
  size = max([float(np.max(np.abs(np.asarray(d, np.float64)))) for d in diff if np.size(d)] or
             [1.0])
  h = eps ** (1 / 3) * max(size, 1.0)
  direction = [rng.standard_normal(np.shape(d)) for d in diff]
  step = lambda sign: [jnp.asarray(np.asarray(d, np.float64) + sign * h * v, d.dtype)  # noqa: E731
                       for d, v in zip(diff, direction, strict=True)]
  plus, minus = (float(np.asarray(value_fn(step(s)), np.float64)) for s in (1, -1))
  fd = (plus - minus) / (2 * h)
  gv = float(sum(np.sum(np.asarray(g, np.float64) * v)
                 for g, v in zip(grads, direction, strict=True)))
  noise = 100 * eps * max(abs(plus), abs(minus)) / h
  said = f"directional derivative {gv:.4g}, finite difference {fd:.4g}"
  if not np.isfinite(fd) or not np.isfinite(gv):
    return False, f"gradient check: {said} (not finite)"
  if max(abs(gv), abs(fd)) <= noise:
    return True, f"gradient check inconclusive: {said}, both within rounding noise {noise:.2g}"
  passed = abs(fd - gv) <= FD_RTOL * max(abs(fd), abs(gv)) + noise
  return passed, f"gradient check {'passed' if passed else 'FAILED'}: {said}"
