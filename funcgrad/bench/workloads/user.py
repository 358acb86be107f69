"""A user's function as a workload: `funcgrad.compare` and `experiments.compare --function`.

`user_function(fn, args, ...)` takes the arguments the way JAX users pass them (see
`bench.user_args`: any pytree, NNX and Equinox modules, keys, static and keyword arguments) and
decides how the rows are checked (see `bench.user_checks`): a float64 re-run for a deterministic
function, eager in its own dtypes with the same keys (and a finite-difference gradient check) for a
random one. `user_workload(...)` makes the `Workload` every engine runs: a function of the
`(diff, rest)` leaf lists, whose reference judges each row allclose-style and records what it was
checked against. A function that is itself jitted runs its inner function in the eager row.
"""

import contextlib
import dataclasses
import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from funcgrad._compat import enable_x64
from funcgrad.bench import user_args, user_checks, user_torch
from funcgrad.bench.workloads.model import (
  Outputs,
  Reference,
  Verdict,
  Workload,
  flat_outputs,
  standard_normal_inputs,
)
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, format_shape

# What a row was checked against (Result.reference).
CHECKED_X64 = "jax float64 re-run"
CHECKED_EAGER_FALLBACK = "jax eager (fn cannot run in float64)"
CHECKED_EAGER = "jax eager, same keys (random function)"
UNCHECKED = "none (check='none')"
UNCHECKED_PEER = "none: a random function, and {family} draws its own numbers"
PRINTING_PRIMITIVES = frozenset({"debug_callback", "debug_print"})
NOT_EAGER = ("eager cannot run {label} op by op: it is jitted and its inner function is out of "
             "reach (no __wrapped__)")


def inner_function(fn: Callable[..., Any]) -> Callable[..., Any] | None:
  """The function a jitted `fn` wraps (`jax.jit`, `equinox.filter_jit`; through partials), `fn`
  itself when it is not jitted, None when it is jitted and its inner function is out of reach."""
  if isinstance(fn, functools.partial):
    inner = inner_function(fn.func)
    return None if inner is None else functools.partial(inner, *fn.args, **fn.keywords)
  if not hasattr(fn, "lower"):  # jax.jit and equinox.filter_jit both offer .lower
    return fn
  return getattr(fn, "__wrapped__", None)


@dataclasses.dataclass(frozen=True)
class UserFunction:
  """Everything compare knows about a user's function before anything is timed.

  Attributes:
    name: the rows' workload name (the caption, or MODULE:NAME on the CLI).
    caption: `loss(MLP 12.6k params, x 32x64)`.
    split: the call split into leaves (`user_args.SplitCall`).
    eager: the same split of the inner function of a jitted `fn` (None: `fn` is jitted and its
      inner function is out of reach; then the eager row says so).
    random: whether `fn` draws random numbers (`user_checks.is_random`).
    check: the check run: 'float64', 'eager' or 'none'.
    tolerance: allclose-style tolerances, from the dtype computed in or the caller's.
    dtype: the dtype computed in.
    prints: whether `fn` prints: a Python `print` while it is traced, or a `jax.debug.print` /
      `jax.debug.callback` in its jaxpr (that may print on every call).
    peers: framework -> the user's version of `fn` in that framework.
  """

  name: str
  caption: str
  split: user_args.SplitCall
  eager: user_args.SplitCall | None
  random: bool
  check: str
  tolerance: user_checks.Tolerance
  dtype: np.dtype
  prints: bool
  peers: Mapping[str, Callable[..., Any]]


def _first_line(e: BaseException) -> str:
  return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e).strip() else ''}"


def user_function(fn: Callable[..., Any], args: Sequence[Any],
                  kwargs: Mapping[str, Any] | None = None, argnums: int | Sequence[int] = 0,
                  static_argnums: int | Sequence[int] = (),
                  static_argnames: str | Sequence[str] = (), has_aux: bool = False,
                  value_and_grad: bool = True, check: str = "auto", rtol: float | None = None,
                  atol: float | None = None, peers: Mapping[str, Callable[..., Any]] | None = None,
                  name: str | None = None, label: str = "fn") -> UserFunction:
  """Splits, traces and classifies `fn(*args, **kwargs)`: what `user_workload` runs.

  Args:
    label: how errors name the function ('fn', or '--function=mod:loss' on the CLI).
    (the others: as `funcgrad.compare` documents them.)

  Raises:
    UsageError: naming the parameter: a non-callable `fn`, bad `kwargs`, `argnums`,
      `static_argnums`/`static_argnames`, `check`, `rtol`/`atol` or `peers`, a function that fails
      to trace, or a non-scalar value where gradients are asked for.
  """
  if not callable(fn):
    raise UsageError(f"{label} is not callable (it is a {type(fn).__name__}).")
  peers = user_torch.check_peers(peers)
  if check not in user_checks.CHECKS:
    user_checks.resolve_check(check, False)  # the error naming `check`
  split = user_args.split_call(fn, args, kwargs, argnums, static_argnums, static_argnames,
                               has_aux, value_and_grad, label)
  printed = io.StringIO()
  try:
    with contextlib.redirect_stdout(printed):  # a Python print runs while tracing
      jaxpr, out = jax.make_jaxpr(split.fn, return_shape=True)(*split.inputs())
      primitives = user_checks.primitives(jaxpr)
  except UsageError:
    raise
  except Exception as e:  # noqa: BLE001 - whatever tracing raised, the user's function failed
    raise UsageError(f"{label} fails to trace on its arguments "
                     f"({user_args.caption(fn, args, kwargs)}): {_first_line(e)}") from None
  if value_and_grad:
    value = out[0] if has_aux and isinstance(out, tuple | list) and len(out) == 2 else out
    if getattr(value, "shape", None) != () or \
        not jax.dtypes.issubdtype(value.dtype, np.inexact):
      got = jax.tree.map(lambda a: getattr(a, "shape", a), value)
      raise UsageError(f"{label} returns {got}, not a scalar: gradients need a float scalar "
                       "(pass has_aux=True for a (value, aux) pair, or value_and_grad=False).")
  random = user_checks.has_typed_key(split.rest) or \
      any(p.startswith(user_checks.RANDOM_PRIMITIVE_PREFIXES) for p in primitives)
  prints = bool(printed.getvalue()) or bool(primitives & PRINTING_PRIMITIVES)
  dtype = user_checks.compute_dtype([out, *split.diff])
  inner = inner_function(fn)
  eager = None if inner is None else split if inner is fn else user_args.split_call(
      inner, args, kwargs, argnums, static_argnums, static_argnames, has_aux, value_and_grad,
      label)
  caption = user_args.caption(fn, args, split.kwargs)
  return UserFunction(name or caption, caption, split, eager, random,
                      user_checks.resolve_check(check, random),
                      user_checks.tolerance_for(dtype, rtol, atol), dtype, prints, peers)


# --------------------------------------------------------------------------------- the reference


def _judge(uf: UserFunction, want: Outputs, label: str, failure: str | None
           ) -> Callable[[Outputs, str], Verdict]:
  tol = uf.tolerance

  def judge(outputs: Outputs, family: str) -> Verdict:
    if uf.check == "none":
      return Verdict(UNCHECKED, None, None, True)
    if family != "jax" and uf.check == "eager":
      return Verdict(UNCHECKED_PEER.format(family=family), None, None, True)
    error = user_checks.allclose_error(outputs, want, tol)
    if failure is not None:
      return Verdict(label, error, 1.0, False, failure, tol.rtol, tol.atol)
    passed = error <= 1.0
    message = None if passed else (
        f"output differs from the {label} reference: |got - want| reaches {error:.3g} x "
        f"(atol + rtol * max|want|) with {tol.describe()}")
    return Verdict(label, error, 1.0, passed, message, tol.rtol, tol.atol)

  return judge


def _eager_outputs(uf: UserFunction, inputs: tuple[Any, ...]) -> Any:
  """The function run op by op, on its inputs committed to the default device as the eager
  engine places them: JAX keeps each primitive's executable per placement, so when the runner
  computes this reference after the eager engine's first call it compiles nothing again."""
  split = uf.eager or uf.split
  return split.program()(*jax.device_put(inputs, jax.devices()[0]))


def reference(uf: UserFunction, inputs: tuple[Any, ...]) -> Reference:
  """The reference every row of `uf` is judged by (see `user_checks` for the three checks)."""
  if uf.check == "none":
    return Reference((), (), UNCHECKED, _judge(uf, (), UNCHECKED, None))
  failure, label, wide = None, CHECKED_X64, uf.check == "float64"
  program = uf.split.program()  # one object: the gradient check's float64 calls reuse its compile
  if wide:
    try:
      out = user_checks.float64_outputs(program, *inputs)
    except Exception:  # noqa: BLE001 - some functions only run in the dtype they were written for
      out, label, wide = _eager_outputs(uf, inputs), CHECKED_EAGER_FALLBACK, False
  else:
    out, label = _eager_outputs(uf, inputs), CHECKED_EAGER
  if uf.split.value_and_grad:
    failure, label = _gradient_check(uf, program, inputs, out, label, wide)
  want = flat_outputs(out)
  return Reference(want, tuple(0.0 for _ in want), label, _judge(uf, want, label, failure))


def _gradient_check(uf: UserFunction, program: Callable[..., Any], inputs: tuple[Any, ...],
                    out: Any, label: str, wide: bool) -> tuple[str | None, str]:
  """The gradients against central finite differences of the value, both in float64 with the
  same keys (a random function's float64 draws differ from its float32 ones, but the three
  evaluations share them), or in the function's own dtype where it cannot run in float64."""
  split = uf.split
  try:
    with enable_x64():
      diff, rest = user_checks.widen(inputs)
      compiled = jax.jit(program)
      grads = out[1] if wide else compiled(diff, rest)[1]
      value = (lambda d: compiled(d, rest)[0][0]) if split.has_aux else \
          (lambda d: compiled(d, rest)[0])
      passed, said = user_checks.directional_check(value, diff, grads)
    where = "float64 "
  except Exception:  # noqa: BLE001 - some functions only run in the dtype they were written for
    split = uf.eager or uf.split
    diff, rest = inputs
    passed, said = user_checks.directional_check(_value_fn(split, rest), diff, out[1])
    where = ""
  checked = "inconclusive" if said.startswith("gradient check inconclusive") else "checked"
  label = f"{label}; gradients {checked} by {where}finite differences"
  return (None if passed else f"the gradients disagree with finite differences of the value "
          f"({said})"), label


def _value_fn(split: user_args.SplitCall, rest: Any) -> Callable[[Any], Any]:
  if split.has_aux:
    return lambda d: split.fn(d, rest)[0]
  return lambda d: split.fn(d, rest)


# ---------------------------------------------------------------------------------- the workload


def input_elements(split: user_args.SplitCall) -> int:
  """How many numbers a call takes in (every traced array leaf): the rows' size."""
  return sum(math.prod(np.shape(x)) for x in (*split.diff, *split.rest))


def user_workload(uf: UserFunction) -> Workload:
  """`uf` as a workload on its own arguments: kinds `value_and_grad` (of the `diff` leaves, one
  gradient per leaf) or `value`; peers: the user's torch version, where given."""
  split = uf.split
  program_peers = {f: user_torch.TorchVersion(split, fn) for f, fn in uf.peers.items()}
  size = (input_elements(split),)
  what = "value + grads of " if split.value_and_grad else ""
  return Workload(
      name=uf.name, description=f"{what}{uf.caption}", fn=split.fn,
      make_inputs=lambda shape, dtype, seed: split.inputs(),
      kind="value_and_grad" if split.value_and_grad else "value", argnums=(0,),
      shape_for=lambda _: size, reference=functools.partial(reference, uf),
      peers=program_peers, shardable=False, has_aux=split.has_aux,
      eager_fn=None if uf.eager is None else uf.eager.fn,
      unsupported={} if uf.eager is not None else {"eager": NOT_EAGER.format(label=uf.caption)})


# ------------------------------------------------------------------------- the CLI's --shapes


def shaped_args(shapes: Sequence[Shape], dtype: Any, seed: int = 0) -> tuple[np.ndarray, ...]:
  """Standard-normal arguments of `shapes` (one per argument), drawn from the seed."""
  rng = np.random.default_rng(seed)
  return tuple(rng.standard_normal(s, np.float32).astype(dtype) for s in shapes)


def describe_shapes(shapes: Sequence[Shape]) -> str:
  return ";".join(format_shape(s) or "scalar" for s in shapes)


__all__ = ["inner_function", "user_function", "user_workload", "reference", "shaped_args",
           "standard_normal_inputs"]
