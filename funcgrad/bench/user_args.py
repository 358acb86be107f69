"""A user's arguments, the way JAX users pass them: split into traced, differentiated and static.

`split_call(fn, args, kwargs, ...)` turns `fn(*args, **kwargs)` into a `SplitCall`: a function of
two lists of array leaves, `(diff, rest)`, with everything else closed over, so that every engine
runs the same pure function of arrays:

- Array leaves (`jax.Array`, `np.ndarray`, NumPy scalars) anywhere in the arguments are traced;
  every other leaf (callables, strings, Python bools, ints and floats) is static, as
  `equinox.filter_jit` does. A whole argument is static where `static_argnums` /
  `static_argnames` say so (`jax.jit`'s meaning).
- `diff` holds the inexact array leaves of the arguments at `argnums` (`equinox.is_inexact_array`
  semantics); integer, bool, PRNG key (typed `jax.random.key` and legacy `uint32[2]`) and counter
  leaves go in `rest`, undifferentiated. Keys stay JAX arrays: nothing here calls NumPy on them.
- A Flax NNX module (a whole argument, or inside one) is split with `nnx.split(module,
  nnx.Param, ...)` once, and merged back on every call: only its `nnx.Param` leaves are
  differentiated (as `nnx.value_and_grad` does); its batch statistics and `nnx.Rngs` keys and
  counters are `rest`. A call does not write state back: every call sees the same state.

The program an engine runs is `jax.value_and_grad(split.fn, has_aux=...)(diff, rest)` (or
`split.fn(diff, rest)` for a value-only workload): its gradients are a list, one per `diff` leaf.
"""

import dataclasses
import functools
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.errors import UsageError
from funcgrad.shapes import format_shape


def is_array(leaf: Any) -> bool:
  """Whether a leaf is traced: a JAX or NumPy array or a NumPy scalar (`equinox.is_array`)."""
  return isinstance(leaf, jax.Array | np.ndarray | np.generic)


def is_key(leaf: Any) -> bool:
  """Whether a leaf is a typed PRNG key array (`jax.random.key`)."""
  return is_array(leaf) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def is_inexact_array(leaf: Any) -> bool:
  """Whether a leaf can be differentiated: a floating or complex array (`equinox` semantics)."""
  return is_array(leaf) and not is_key(leaf) and jnp.issubdtype(leaf.dtype, jnp.inexact)


# ----------------------------------------------------------------------------------- Flax NNX


def _nnx():
  """`flax.nnx` if it is imported, else None. An NNX module exists only once its class's
  package is imported, so a function of plain arrays or another framework's modules does not
  pay for importing Flax (0.3-0.4 s after JAX and optax, where it is installed)."""
  return sys.modules.get("flax.nnx")


@jax.tree_util.register_pytree_node_class
class _NnxSplit:
  """An NNX module as a pytree: its graph definition static, its Param state and the rest."""

  def __init__(self, graphdef: Any, params: Any, rest: Any):
    self.graphdef, self.params, self.rest = graphdef, params, rest

  def tree_flatten(self):
    return (self.params, self.rest), self.graphdef

  @classmethod
  def tree_unflatten(cls, graphdef, children):
    return cls(graphdef, *children)

  def merge(self) -> Any:
    return _nnx().merge(self.graphdef, self.params, self.rest)


def _split_modules(tree: Any) -> Any:
  nnx = _nnx()
  if nnx is None:
    return tree
  is_module = lambda x: isinstance(x, nnx.Module)  # noqa: E731
  return jax.tree.map(lambda x: _NnxSplit(*nnx.split(x, nnx.Param, ...)) if is_module(x) else x,
                      tree, is_leaf=is_module)


def _merge_modules(tree: Any, merge: Callable[[_NnxSplit], Any] = _NnxSplit.merge) -> Any:
  is_split = lambda x: isinstance(x, _NnxSplit)  # noqa: E731
  if not any(is_split(x) for x in jax.tree.leaves(tree, is_leaf=is_split)):
    return tree
  return jax.tree.map(lambda x: merge(x) if is_split(x) else x, tree, is_leaf=is_split)


def _deep_merge(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
  out = dict(a)
  for k, v in b.items():
    out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
  return out


def pure_dict(split: _NnxSplit) -> dict[Any, Any]:
  """A split NNX module's whole state as nested dicts of its leaves (`State.to_pure_dict`)."""
  return _deep_merge(split.params.to_pure_dict(), split.rest.to_pure_dict())


def _differentiable_mask(tree: Any, wanted: bool) -> Any:
  """A tree of bools: which leaves of one argument may be differentiated (NNX: Params only)."""
  def mark(x):
    if isinstance(x, _NnxSplit):
      return _NnxSplit(x.graphdef, jax.tree.map(lambda _: wanted, x.params),
                       jax.tree.map(lambda _: False, x.rest))
    return wanted

  return jax.tree.map(mark, tree, is_leaf=lambda x: isinstance(x, _NnxSplit))


# ------------------------------------------------------------------------------ the split call


@dataclasses.dataclass(frozen=True)
class SplitCall:
  """`fn(*args, **kwargs)` as a pure function of two lists of array leaves.

  Attributes:
    fn: `fn(diff, rest)`: the user's function on the arguments rebuilt from the leaves.
    diff: the differentiated leaves (inexact arrays at `argnums`, NNX Params).
    rest: the other array leaves (integers, bools, keys, counters, arrays not at `argnums`).
    n_static: how many leaves are held static (callables, strings, Python scalars).
    argnums, has_aux, value_and_grad: as given.
    arg_names: one name per positional argument, then the keyword names (for captions).
    args, kwargs: the arguments as given (NNX modules not split).
  """

  fn: Callable[[list[Any], list[Any]], Any]
  diff: list[Any]
  rest: list[Any]
  n_static: int
  argnums: tuple[int, ...]
  has_aux: bool
  value_and_grad: bool
  arg_names: tuple[str, ...]
  args: tuple[Any, ...]
  kwargs: Mapping[str, Any]

  def inputs(self) -> tuple[list[Any], list[Any]]:
    """The workload's inputs: `(diff, rest)`."""
    return self.diff, self.rest

  def program(self) -> Callable[..., Any]:
    """What one call evaluates on `(diff, rest)`: value and gradients of `diff`, or the value."""
    if self.value_and_grad:
      return jax.value_and_grad(self.fn, has_aux=self.has_aux)
    return self.fn

  def rebuild(self, diff: Sequence[Any], rest: Sequence[Any],
              modules: Callable[[Any], Any] | None = None) -> tuple[tuple[Any, ...],
                                                                     dict[str, Any]]:
    """The user's `(args, kwargs)` from leaves: what `fn` is called on.

    Args:
      diff, rest: leaves in the order of `self.diff` and `self.rest` (any framework's arrays).
      modules: what becomes of each split NNX module (default: `nnx.merge`d back; `pure_dict`
        gives its state as a nested dict, for a peer framework's leaves).
    """
    return self._rebuild(list(diff), list(rest), modules or _NnxSplit.merge)

  _rebuild: Callable[..., tuple[tuple[Any, ...], dict[str, Any]]] = \
      dataclasses.field(default=None, repr=False)


def _normalize_argnums(argnums: int | Sequence[int], n_args: int, name: str) -> tuple[int, ...]:
  argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  for i in argnums:
    if not isinstance(i, int) or not -n_args <= i < n_args:
      raise UsageError(f"argnums={i!r} is out of range for {name}, which is given {n_args} "
                       "positional arguments.")
  return tuple(sorted({i % n_args for i in argnums}))


def positional_names(fn: Callable[..., Any], n_args: int) -> tuple[str, ...]:
  """The names of `fn`'s first `n_args` positional parameters (arg0, arg1... where unknown)."""
  try:
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
  except (TypeError, ValueError):
    params = []
  names = []
  for i in range(n_args):
    if i < len(params) and params[i].kind != params[i].VAR_POSITIONAL:
      names.append(params[i].name)
    else:
      names.append(f"arg{i}")
  return tuple(names)


def _static_indices(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
                    static_argnums: int | Sequence[int], static_argnames: str | Sequence[str],
                    name: str) -> tuple[set[int], set[str]]:
  static_argnums = (static_argnums,) if isinstance(static_argnums, int) else \
      tuple(static_argnums)
  static_argnames = (static_argnames,) if isinstance(static_argnames, str) else \
      tuple(static_argnames)
  numbers = set()
  for i in static_argnums:
    if not isinstance(i, int) or not -len(args) <= i < len(args):
      raise UsageError(f"static_argnums={i!r} is out of range for {name}, which is given "
                       f"{len(args)} positional arguments.")
    numbers.add(i % len(args))
  positional = positional_names(fn, len(args))
  names = set()
  for n in static_argnames:
    if n in kwargs:
      names.add(n)
    elif n in positional:  # jax.jit: a static name also makes its positional argument static
      numbers.add(positional.index(n))
    else:
      raise UsageError(f"static_argnames={n!r} names no argument of {name} (positional: "
                       f"{', '.join(positional) or 'none'}; "
                       f"kwargs: {', '.join(kwargs) or 'none'}).")
  return numbers, names


def split_call(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any] | None = None,
               argnums: int | Sequence[int] = 0, static_argnums: int | Sequence[int] = (),
               static_argnames: str | Sequence[str] = (), has_aux: bool = False,
               value_and_grad: bool = True, name: str = "fn") -> SplitCall:
  """Splits `fn(*args, **kwargs)` into differentiated, other traced and static leaves.

  Args:
    fn: the user's function.
    args: its positional arguments (any pytrees; NNX modules anywhere in them).
    kwargs: its keyword arguments (a dict), traced like positional ones but never differentiated.
    argnums: the positional arguments to differentiate (ignored when `value_and_grad` is False).
    static_argnums, static_argnames: arguments held static whole, as `jax.jit` holds them.
    has_aux: `fn` returns `(value, aux)`; only `value` is differentiated.
    value_and_grad: False: a call is `fn` itself.
    name: how errors name the function.

  Returns:
    A `SplitCall`.

  Raises:
    UsageError: `kwargs` is not a dict, an argnum out of range, a static argument that is also
      differentiated, or nothing to differentiate at `argnums`.
  """
  if kwargs is None:
    kwargs = {}
  if not isinstance(kwargs, Mapping):
    raise UsageError(f"kwargs must be a dict of keyword arguments for {name}, not a "
                     f"{type(kwargs).__name__}.")
  kwargs = dict(kwargs)
  args = tuple(args)
  numbers, names = _static_indices(fn, args, kwargs, static_argnums, static_argnames, name)
  if value_and_grad:
    if not args:
      raise UsageError(f"{name} is given no positional argument to differentiate (pass "
                       "value_and_grad=False to time the function itself).")
    argnums = _normalize_argnums(argnums, len(args), name)
    both = sorted(numbers & set(argnums))
    if both:
      raise UsageError(f"static_argnums/static_argnames make argument {both[0]} of {name} "
                       f"static, but argnums={argnums} differentiates it.")
  else:
    argnums = ()
  static_args = {i: args[i] for i in numbers}
  static_kwargs = {k: kwargs[k] for k in names}
  traced_args = tuple(None if i in numbers else _split_modules(a) for i, a in enumerate(args))
  traced_kwargs = {k: _split_modules(v) for k, v in kwargs.items() if k not in names}
  tree = (traced_args, traced_kwargs)
  leaves, treedef = jax.tree.flatten(tree)
  masks = (tuple(_differentiable_mask(a, i in argnums) for i, a in enumerate(traced_args)),
           {k: _differentiable_mask(v, False) for k, v in traced_kwargs.items()})
  wanted = jax.tree.leaves(masks)
  assert len(wanted) == len(leaves), (len(wanted), len(leaves))
  where = ["diff" if w and is_inexact_array(leaf) else "rest" if is_array(leaf) else "static"
           for leaf, w in zip(leaves, wanted, strict=True)]
  diff = [leaf for leaf, w in zip(leaves, where, strict=True) if w == "diff"]
  rest = [leaf for leaf, w in zip(leaves, where, strict=True) if w == "rest"]
  static = [leaf for leaf, w in zip(leaves, where, strict=True) if w == "static"]
  if value_and_grad and not diff:
    found = sorted({str(leaf.dtype) for i in argnums for leaf in jax.tree.leaves(args[i])
                    if is_array(leaf)})
    raise UsageError(f"argnums={argnums} of {name} holds no floating-point array to "
                     f"differentiate (found dtype {', '.join(found) or 'none: no arrays'}; "
                     "integer, bool and key leaves are not differentiated).")

  def rebuild(d: list[Any], r: list[Any], merge: Callable[[_NnxSplit], Any]
              ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    its = {"diff": iter(d), "rest": iter(r), "static": iter(static)}
    traced_args, traced_kwargs = jax.tree.unflatten(treedef, [next(its[w]) for w in where])
    call_args = tuple(static_args[i] if i in numbers else _merge_modules(a, merge)
                      for i, a in enumerate(traced_args))
    return call_args, {**{k: _merge_modules(v, merge) for k, v in traced_kwargs.items()},
                       **static_kwargs}

  def split_fn(d: list[Any], r: list[Any]) -> Any:
    call_args, call_kwargs = rebuild(d, r, _NnxSplit.merge)
    return fn(*call_args, **call_kwargs)

  arg_names = positional_names(fn, len(args)) + tuple(kwargs)
  return SplitCall(split_fn, diff, rest, len(static), argnums, has_aux, value_and_grad,
                   arg_names, args, kwargs, rebuild)


# -------------------------------------------------------------------------------------- captions


def function_name(fn: Callable[..., Any]) -> str:
  """A function's short name: a partial by its `.func`, a jitted function by its inner one."""
  while isinstance(fn, functools.partial):
    fn = fn.func
  for candidate in (fn, getattr(fn, "__wrapped__", None), getattr(fn, "fn", None)):
    name = getattr(candidate, "__name__", None)
    if isinstance(name, str):
      return name
  return type(fn).__name__


def _count(n: int) -> str:
  for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
    if n >= div:
      return f"{n / div:.1f}{suffix}"
  return str(n)


def _short_dtype(dtype: Any) -> str:
  names = {"float32": "", "bfloat16": " bf16", "float16": " f16", "float64": " f64"}
  name = np.dtype(dtype).name if not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) else "key"
  return names.get(name, f" {name}")


def describe_value(value: Any) -> str:
  """One compact word for an argument: `32x64`, `key`, `MLP 12.6k params`, `3`, `relu`."""
  if is_key(value):
    return "key" if value.shape == () else f"key {format_shape(value.shape)}"
  if is_array(value):
    return (format_shape(np.shape(value)) or "scalar") + _short_dtype(value.dtype)
  if isinstance(value, bool | int | float | str) or value is None:
    return repr(value)
  leaves = jax.tree.leaves(_split_modules(value))
  if callable(value) and not any(is_array(x) for x in leaves):
    return function_name(value)
  params = sum(math.prod(np.shape(x)) for x in leaves if is_inexact_array(x))
  kind = type(value).__name__
  if isinstance(value, dict | list | tuple) and len(leaves) == 1 and is_array(leaves[0]):
    return f"{kind}[{describe_value(leaves[0])}]"
  return f"{kind} {_count(params)} params"


def caption(fn: Callable[..., Any], args: Sequence[Any],
            kwargs: Mapping[str, Any] | None = None) -> str:
  """`loss(MLP 12.6k params, x 32x64, training=True)`: the function and its arguments, compactly.

  A bound `functools.partial` is named by its `.func`, and its bound arguments are not printed.
  """
  kwargs = kwargs or {}
  names = positional_names(fn, len(args))
  parts = []
  for n, value in zip(names, args, strict=True):
    word = describe_value(value)
    if isinstance(value, bool | int | float | str):
      parts.append(f"{n}={word}")
    elif word.endswith(" params") or n.startswith("arg") or word.startswith(n):
      parts.append(word)  # a module or a pytree of parameters: its size says what it is
    else:
      parts.append(f"{n} {word}")
  parts += [f"{k}={describe_value(v)}" for k, v in kwargs.items()]
  return f"{function_name(fn)}({', '.join(parts)})"


def n_parameters(split: SplitCall) -> int:
  """How many numbers are differentiated per call."""
  return sum(math.prod(np.shape(x)) for x in split.diff)
