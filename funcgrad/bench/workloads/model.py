"""The one `Workload` model the runner times (the tutorial's losses, the fits, the models, yours).

A workload is a pure JAX function, a way to make its inputs from a seed and a size, which
arguments are differentiated, and how its outputs are checked:

- kind `value_and_grad`: a call is `jax.value_and_grad(fn, argnums)(*inputs)`; outputs are
  `(value, grads)` with `grads` a tuple over `argnums`.
- kind `value`: a call is `fn(*inputs)`; outputs are whatever pytree `fn` returns.
- kind `train`: `fn` is an optimiser step `(params, opt_state, *data) -> (params, opt_state,
  loss)`; a call is `steps` steps that carry the parameters and optimiser state from one call to
  the next; outputs are `(params, loss)` of the call's last step.

Outputs are compared leaf by leaf (in `jax.tree.leaves` order) with a float64 reference: the
workload's own (a hand-written NumPy float64 computation), or else a float64 re-run of `fn` on
float64 copies of the inputs under `jax.experimental.enable_x64`, or, where `fn` cannot run in
float64, the eager float32 output (the row says which it used). Peers (NumPy, PyTorch,
TensorFlow) are optional per workload: an engine a workload does not implement makes a row
marked `not_implemented`, never a failed sweep.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from funcgrad._compat import enable_x64
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, format_shape

Outputs = tuple[np.ndarray, ...]  # the leaves of a call's outputs, on the host
KINDS = ("value_and_grad", "value", "train")

# The reference a row was checked against.
REFERENCE_NUMPY = "numpy float64"
REFERENCE_X64 = "jax float64 re-run"
REFERENCE_EAGER = "jax eager (fn cannot run in float64)"


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
  """The expected outputs of one call, the scale each output's error is measured against, and
  what computed them."""

  outputs: Outputs
  scales: tuple[float, ...]
  label: str
  # Where set, how a row is judged instead: `judge(outputs, family) -> Verdict` (a user's
  # function: allclose-style tolerances, random functions, peers that draw their own numbers).
  judge: "Callable[[Outputs, str], Verdict] | None" = None


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
  """How one row's first output compared: against what, how far off, and whether it passes.

  `error` is on the scale `tolerance` bounds (<= tolerance passes); `message` says why it failed.
  """

  label: str
  error: float | None
  tolerance: float | None
  passed: bool
  message: str | None = None
  rtol: float | None = None
  atol: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
  """A computation to time, engine-independent.

  Attributes:
    name: the flag value ('muladd_sum', 'mymodule:myfn').
    description: one line for tables.
    fn: the pure JAX function (see the module docstring for what it is per kind).
    make_inputs: `make_inputs(shape, dtype, seed)` -> the call's arguments (array pytrees; for
      kind `train`, `(params, *data)`). The same seed gives every engine the same numbers.
    kind: one of KINDS.
    argnums: the differentiated arguments (kind `value_and_grad`).
    shape_for: the input shape for a requested size; raises `UsageError` for a size that does not
      fit the workload.
    reference: `reference(inputs) -> Reference`, float64; None: a float64 re-run of `fn`.
    peers: per peer ('numpy', 'torch', 'tf') a builder of that framework's program (see
      `engines.py` for each builder's signature); absent peers are not implemented.
    bytes_moved: `bytes_moved(shape, itemsize)`, the least bytes any implementation moves.
    flops: `flops(shape)`, floating-point operations per call (None: not counted).
    tolerance_factor: multiplies the dtype's tolerance (deeper computations round more).
    steps: kind `train`: optimiser steps per call.
    optimizer: kind `train`: the optax optimiser `fn` steps with.
    shardable: whether `--devices/--mesh` may split the inputs (the first dimension of each).
    bound: 'memory' (rows compared with copy bandwidth) or 'compute' (with the matmul peak).
    batch_args: where set, `--devices/--mesh` split only these arguments' rows (the batch) over
      every device and replicate the others (data parallelism: a model's parameters).
    n_inputs, ndim: for the tutorial's elementwise losses, how many input arrays and of what
      rank (what the graph and export tools build their input specs from); None otherwise.
    has_aux: kind `value_and_grad`: `fn` returns `(value, aux)` (`jax.value_and_grad`'s meaning).
    eager_fn: what the eager engine runs instead of `fn` (a jitted function's inner one).
    unsupported: engine name -> why this workload cannot run on it (its row: not implemented).
  """

  name: str
  description: str
  fn: Callable[..., Any]
  make_inputs: Callable[[Shape, Any, int], tuple[Any, ...]]
  kind: str = "value_and_grad"
  argnums: tuple[int, ...] = (0,)
  shape_for: Callable[[Shape], Shape] = lambda size: size
  reference: Callable[[tuple[Any, ...]], Reference] | None = None
  peers: Mapping[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
  bytes_moved: Callable[[Shape, int], int] | None = None
  flops: Callable[[Shape], int] | None = None
  tolerance_factor: float = 1.0
  steps: int = 1
  optimizer: optax.GradientTransformation | None = None
  shardable: bool = True
  n_inputs: int | None = None
  ndim: int | None = None
  batch_args: tuple[int, ...] | None = None
  bound: str = "memory"
  has_aux: bool = False
  eager_fn: Callable[..., Any] | None = None
  unsupported: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Invalid workload {self.kind=}: expected one of {KINDS}.")
    if self.kind == "train" and self.optimizer is None:
      raise ValueError(f"Workload {self.name!r} of kind 'train' needs an optimizer.")

  def jax_program(self) -> Callable[..., Any]:
    """What the JAX engines run per call, for kinds `value_and_grad` and `value`."""
    return self._program(self.fn)

  def eager_program(self) -> Callable[..., Any]:
    """What the eager engine runs per call: `eager_fn` (the inner function of a jitted one)
    where set, else `jax_program()`."""
    return self._program(self.eager_fn or self.fn)

  def _program(self, fn: Callable[..., Any]) -> Callable[..., Any]:
    if self.kind == "value_and_grad":
      return jax.value_and_grad(fn, argnums=self.argnums, has_aux=self.has_aux)
    if self.kind == "value":
      return fn
    raise ValueError(f"Workload {self.name!r} is a training step: its engines run `fn` itself, "
                     "`steps` times per call.")

  def jax_value_and_grads(self) -> Callable[..., Any]:
    """The JAX function one call evaluates (an alias of `jax_program`)."""
    return self.jax_program()

  def least_bytes(self, shape: Shape, dtype: Any) -> int | None:
    """The least bytes one call at `shape` in `dtype` reads and writes (None: not said)."""
    if self.bytes_moved is None:
      return None
    return self.bytes_moved(shape, np.dtype(dtype).itemsize)

  def tolerance(self, dtype: Any) -> float:
    """The largest acceptable `max_rel_error` for this workload in `dtype`."""
    return tolerance(dtype) * self.tolerance_factor

  def check_size(self, size: Shape) -> Shape:
    """`shape_for(size)`, the error naming the workload when the size does not fit."""
    return self.shape_for(size)

  def expected(self, inputs: tuple[Any, ...]) -> Reference:
    """The float64 reference for `inputs`: the workload's own, or a float64 re-run of `fn`."""
    if self.reference is not None:
      return self.reference(inputs)
    return rerun_reference(self, inputs)


def flat_outputs(out: Any) -> Outputs:
  """The leaves of any framework's outputs as NumPy arrays (torch and TF tensors included)."""
  def host(leaf):
    if hasattr(leaf, "detach"):  # torch
      leaf = leaf.detach().cpu()
      return leaf.float().numpy() if str(leaf.dtype) == "torch.bfloat16" else leaf.numpy()
    if hasattr(leaf, "numpy") and not isinstance(leaf, np.ndarray | jax.Array):  # TensorFlow
      return np.asarray(leaf.numpy())
    return np.asarray(leaf)

  return tuple(host(leaf) for leaf in jax.tree.leaves(out))


def max_scales(outputs: Outputs) -> tuple[float, ...]:
  """Each output's largest magnitude: errors are relative to it (an all-zero output: absolute)."""
  return tuple(float(np.max(np.abs(o))) if np.size(o) else 0.0 for o in outputs)


def cast_floats(tree: Any, dtype: Any) -> Any:
  def cast(leaf):
    leaf = np.asarray(leaf)
    return leaf.astype(dtype) if np.issubdtype(leaf.dtype, np.floating) or \
        leaf.dtype.name == "bfloat16" else leaf

  return jax.tree.map(cast, tree)


def rerun_reference(workload: Workload, inputs: tuple[Any, ...]) -> Reference:
  """`fn` re-run in float64 on float64 copies of the inputs; the eager output where `fn` cannot
  run in float64 (then the label says so)."""
  try:
    with enable_x64():
      wide = cast_floats(inputs, np.float64)
      if workload.kind == "train":
        out = run_train_steps(workload, wide)
      else:
        out = workload.jax_program()(*wide)
      outputs = tuple(np.asarray(o, np.float64) for o in flat_outputs(out))
    label = REFERENCE_X64
  except Exception:  # noqa: BLE001 - some functions only run in the dtype they were written for
    out = workload.jax_program()(*inputs) if workload.kind != "train" else \
        run_train_steps(workload, inputs)
    outputs = tuple(np.asarray(o, np.float64) for o in flat_outputs(out))
    label = REFERENCE_EAGER
  return Reference(outputs, max_scales(outputs), label)


def run_train_steps(workload: Workload, inputs: tuple[Any, ...]) -> Any:
  params, *data = inputs
  state = workload.optimizer.init(params)
  loss = None
  for _ in range(workload.steps):
    params, state, loss = workload.fn(params, state, *data)
  return params, loss


def max_rel_error(outputs: Outputs, reference: Outputs, scales: tuple[float, ...]) -> float:
  """max over outputs of max|got - want| / scale (scale 0 -> absolute error).

  Raises:
    ValueError: when the outputs' count or shapes differ from the reference's (an engine bug).
  """
  if len(outputs) != len(reference):
    raise ValueError(f"Expected {len(reference)} outputs, got {len(outputs)}")
  errors = []
  for got, want, scale in zip(outputs, reference, scales, strict=True):
    got = np.asarray(got, np.float64)
    if got.shape != np.shape(want):
      raise ValueError(f"Output shape {got.shape} != reference shape {np.shape(want)}")
    with np.errstate(invalid="ignore", over="ignore"):
      err = np.max(np.abs(got - want)) if got.size else 0.0
    err = float(err) / scale if scale > 0 else float(err)
    errors.append(err if np.isfinite(err) else np.inf)  # NaN or inf output: infinitely wrong
  return max(errors)


def tolerance(dtype: Any) -> float:
  """The largest acceptable `max_rel_error` for a dtype (a few hundred ulps of slack)."""
  return {2: 2e-2, 4: 1e-5, 8: 1e-12}[np.dtype(dtype).itemsize]


def standard_normal_inputs(count: int) -> Callable[[Shape, Any, int], tuple[np.ndarray, ...]]:
  def make_inputs(shape: Shape, dtype: Any, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape, np.float32).astype(dtype) for _ in range(count))

  return make_inputs


def two_d_size(size: Shape) -> Shape:
  """NxD as given; N alone is Nx1."""
  if len(size) > 2:
    raise UsageError(f"Size {format_shape(size)} has {len(size)} dimensions; this workload takes"
                     " N or NxD.")
  return size if len(size) == 2 else (size[0], 1)


def one_d_size(size: Shape) -> Shape:
  """N as given; NxD flattens to N*D."""
  return (math.prod(size),)


def numpy_program(value_and_grads: Callable[..., Any]) -> Callable[..., Any]:
  """A hand-written NumPy `(value, grads)` as the numpy peer's program: `(value, grads_tuple)`
  (a single gradient, an array or a dict of them, becomes a 1-tuple)."""
  def program(*inputs):
    value, grads_ = value_and_grads(*inputs)
    return np.asarray(value), grads_ if isinstance(grads_, tuple) else (grads_,)

  return program
