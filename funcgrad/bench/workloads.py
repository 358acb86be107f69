"""What the runner times: one `Workload` model for the tutorial's losses, the fits and yours.

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
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import grads, losses, nn, optimize, problems
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

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Invalid workload {self.kind=}: expected one of {KINDS}.")
    if self.kind == "train" and self.optimizer is None:
      raise ValueError(f"Workload {self.name!r} of kind 'train' needs an optimizer.")

  def jax_program(self) -> Callable[..., Any]:
    """What the JAX engines run per call, for kinds `value_and_grad` and `value`."""
    if self.kind == "value_and_grad":
      return jax.value_and_grad(self.fn, argnums=self.argnums)
    if self.kind == "value":
      return self.fn
    raise ValueError(f"Workload {self.name!r} is a training step: use `train_step`.")

  def jax_value_and_grads(self) -> Callable[..., Any]:
    """The JAX function one call evaluates (an alias of `jax_program`)."""
    return self.jax_program()

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


def _cast(tree: Any, dtype: Any) -> Any:
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
      wide = _cast(inputs, np.float64)
      if workload.kind == "train":
        out = _train_call_once(workload, wide)
      else:
        out = workload.jax_program()(*wide)
      outputs = tuple(np.asarray(o, np.float64) for o in flat_outputs(out))
    label = REFERENCE_X64
  except Exception:  # noqa: BLE001 - some functions only run in the dtype they were written for
    out = workload.jax_program()(*inputs) if workload.kind != "train" else \
        _train_call_once(workload, inputs)
    outputs = tuple(np.asarray(o, np.float64) for o in flat_outputs(out))
    label = REFERENCE_EAGER
  return Reference(outputs, max_scales(outputs), label)


def _train_call_once(workload: Workload, inputs: tuple[Any, ...]) -> Any:
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


# ------------------------------------------------------------------------ the tutorial's losses


def _standard_normal(count: int) -> Callable[[Shape, Any, int], tuple[np.ndarray, ...]]:
  def make_inputs(shape: Shape, dtype: Any, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape, np.float32).astype(dtype) for _ in range(count))

  return make_inputs


def _two_d(size: Shape) -> Shape:
  """NxD as given; N alone is Nx1."""
  if len(size) > 2:
    raise UsageError(f"Size {format_shape(size)} has {len(size)} dimensions; this workload takes"
                     " N or NxD.")
  return size if len(size) == 2 else (size[0], 1)


def _one_d(size: Shape) -> Shape:
  """N as given; NxD flattens to N*D."""
  return (math.prod(size),)


def _elementwise_bytes(n_inputs: int, n_grads: int) -> Callable[[Shape, int], int]:
  def bytes_moved(shape: Shape, itemsize: int) -> int:
    return (n_inputs + n_grads) * math.prod(shape) * itemsize + itemsize

  return bytes_moved


def _muladd_sum_reference(inputs: tuple[np.ndarray, ...]) -> Reference:
  x, y, z = (np.asarray(a, np.float64) for a in inputs)
  outputs = (np.sum(x * y + z), y, x, np.ones_like(z))
  # The value's rounding error grows with the sum of the magnitudes, not with the (cancelling) sum.
  scales = (np.sum(np.abs(x * y)) + np.sum(np.abs(z)), *(np.max(np.abs(g)) for g in outputs[1:]))
  return Reference(outputs, tuple(float(s) for s in scales), REFERENCE_NUMPY)


def _abs_loss_reference(inputs: tuple[np.ndarray, ...]) -> Reference:
  x, target = (np.asarray(a, np.float64) for a in inputs)
  d = 2 * x**2 + 3 - target
  outputs = (np.sum(np.abs(d)), 4 * x * np.sign(d))
  return Reference(outputs, (float(np.sum(np.abs(d))), float(np.max(np.abs(outputs[1])))),
                   REFERENCE_NUMPY)


def _numpy_value_and_grads(value_and_grads: Callable[..., Any]) -> Callable[..., Any]:
  """A hand-written NumPy `(value, grads)` as the numpy peer's program: `(value, grads_tuple)`
  (a single gradient, an array or a dict of them, becomes a 1-tuple)."""
  def program(*inputs):
    value, grads_ = value_and_grads(*inputs)
    return np.asarray(value), grads_ if isinstance(grads_, tuple) else (grads_,)

  return program


def _elementwise(name: str, description: str, loss: Callable[..., Any], jax_fn, n_inputs: int,
                 argnums: tuple[int, ...], shape_for, numpy_fn, reference) -> Workload:
  # Written against `ops`: one expression for every peer (torch is its own `ops`).
  peer_loss = {"torch": loss, "tf": lambda tf, *a: loss(losses.tensorflow_ops(tf), *a)}
  return Workload(
      name=name, description=description, fn=jax_fn, make_inputs=_standard_normal(n_inputs),
      argnums=argnums, shape_for=shape_for, reference=reference,
      peers={"numpy": _numpy_value_and_grads(numpy_fn), **peer_loss},
      bytes_moved=_elementwise_bytes(n_inputs, len(argnums)),
      flops=lambda shape: 2 * math.prod(shape) * n_inputs, n_inputs=n_inputs,
      ndim=2 if shape_for is _two_d else 1)


MULADD_SUM = _elementwise(
    "muladd_sum", "value + 3 grads of sum(x*y + z)", losses.muladd_sum, grads.muladd_sum, 3,
    (0, 1, 2), _two_d, grads.muladd_sum_grads_numpy, _muladd_sum_reference)

ABS_LOSS = _elementwise(
    "abs_loss", "value + grad of sum(|2x^2 + 3 - target|)", losses.abs_loss, grads.abs_loss, 2,
    (0,), _one_d, grads.abs_loss_grads_numpy, _abs_loss_reference)


# ------------------------------------------------------------------------------------- the fits

FIT_OPTIMIZER, FIT_LEARNING_RATE, FIT_STEPS = "adam", 0.01, 1000


def _fit_step(loss: Callable[..., Any], optimizer: optax.GradientTransformation):
  def step(params, opt_state, *data):
    value, grad = jax.value_and_grad(loss)(params, *data)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step


def _fit_problem(problem_name: str, shape: Shape, seed: int) -> problems.Problem:
  if problem_name == "abs_loss":
    return problems.abs_loss_problem()  # the tutorial's two parameters, whatever the size
  return problems.linear_regression_problem(*shape, seed=seed)


def _numpy_fit(problem: problems.Problem, learning_rate: float, params: np.ndarray,
               data: tuple[np.ndarray, ...], steps: int, carry: dict[str, Any]) -> Any:
  """`steps` NumPy Adam steps (optax's rule written out) from `carry`, which they update."""
  update = optimize.numpy_update(FIT_OPTIMIZER, learning_rate)
  loss = None
  for _ in range(steps):
    carry["t"] = carry.get("t", 0) + 1
    loss, grad = problem.numpy_loss_and_grad(carry.setdefault("params", params), *data)
    delta, carry["state"] = update(grad, carry.get("state"), carry["t"])
    carry["params"] = (carry["params"] + delta).astype(params.dtype)
  return carry["params"], np.asarray(loss)


def fit_workload(problem_name: str, steps: int = FIT_STEPS,
                 learning_rate: float = FIT_LEARNING_RATE) -> Workload:
  """A whole Adam fit of a `problems` problem as a training workload: one call is `steps` steps.

  `abs_loss` has two parameters whatever the size (the tutorial's x0 = [2, 3]); the least-squares
  fit takes NxD (N samples of D features). Checked against the float64 NumPy fit.
  """
  problem = _fit_problem(problem_name, (4, 2), 0)  # its loss functions; the data come per size
  optimizer = optimize.make_optimizer(FIT_OPTIMIZER, learning_rate)

  def make_inputs(shape, dtype, seed):
    made = _fit_problem(problem_name, shape, seed)
    return tuple(np.asarray(a).astype(dtype) for a in (made.init_params, *made.data))

  def reference(inputs):
    params, *data = (np.asarray(a, np.float64) for a in inputs)
    outputs = _numpy_fit(problem, learning_rate, params, tuple(data), steps, {})
    outputs = tuple(np.asarray(o, np.float64) for o in outputs)
    return Reference(outputs, tuple(max(1.0, s) for s in max_scales(outputs)), REFERENCE_NUMPY)

  def numpy_peer(inputs, steps):
    params, *data = inputs
    return functools.partial(_numpy_fit, problem, learning_rate, params, tuple(data), steps, {})

  # abs_loss has a kink at its optimum: there float32 rounding can flip a gradient's sign, so
  # float32 trajectories may end up to about one learning rate apart (relative to 1).
  tolerance_factor = 10.0 if problem.smooth else learning_rate / tolerance(np.float32)
  return Workload(
      name=f"fit_{problem_name}", description=f"{steps} Adam steps on {problem_name}",
      fn=_fit_step(functools.partial(problem.loss, jnp), optimizer), make_inputs=make_inputs,
      kind="train", shape_for=(lambda size: (2,)) if problem_name == "abs_loss" else _two_d,
      reference=reference,
      peers={"numpy": numpy_peer,
             "torch": functools.partial(_torch_fit_peer, problem.loss, learning_rate)},
      tolerance_factor=tolerance_factor, steps=steps, optimizer=optimizer, shardable=False)


def _torch_fit_peer(loss: Callable[..., Any], learning_rate: float, torch: Any,
                    tensors: list[Any], steps: int, compiled: bool) -> Callable[[], Any]:
  """`torch.optim.Adam` with optax's hyper-parameters, carrying its state from call to call."""
  params, *data = tensors
  params = params.detach().clone().requires_grad_(True)
  optimizer = torch.optim.Adam([params], lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)
  fn = functools.partial(loss, torch)
  if compiled:
    fn = torch.compile(fn, dynamic=False)

  def call():
    value = None
    for _ in range(steps):
      optimizer.zero_grad()
      value = fn(params, *data)
      value.backward()
      optimizer.step()
    return params.detach(), value.detach()

  return call


# ------------------------------------------------------------------------------- a user's function


def user_workload(fn: Callable[..., Any], name: str, argnums: tuple[int, ...] = (0,),
                  value_and_grad: bool = True,
                  make_inputs: Callable[[Shape, Any, int], tuple[Any, ...]] | None = None,
                  shape_for: Callable[[Shape], Shape] | None = None) -> Workload:
  """Any JAX-traceable function of array pytrees as a workload (engines: the JAX ones).

  Its reference is a float64 re-run of `fn`, or the eager output where `fn` cannot run in float64.
  """
  return Workload(
      name=name, description=f"{'value + grads of ' if value_and_grad else ''}{name}", fn=fn,
      make_inputs=make_inputs or _standard_normal(1),
      kind="value_and_grad" if value_and_grad else "value", argnums=tuple(argnums),
      shape_for=shape_for or (lambda size: size), tolerance_factor=10.0)


# ------------------------------------------------------------------- the models people train

MODEL_LEARNING_RATE = 1e-3


def _size_of(parse: Callable[[Shape], tuple[int, int]]) -> Callable[[Shape], Shape]:
  """A size parser from `nn` as a `shape_for`: its ValueError becomes the user's error."""
  def shape_for(size: Shape) -> Shape:
    try:
      return parse(size)
    except ValueError as e:
      raise UsageError(str(e)) from None

  return shape_for


def _float64(tree: Any) -> Any:
  return _cast(tree, np.float64)


def _numpy_reference(value_and_grads: Callable[..., Any]) -> Callable[[tuple], Reference]:
  def reference(inputs):
    value, grads_ = value_and_grads(*_float64(inputs))
    outputs = tuple(np.asarray(o, np.float64) for o in flat_outputs((value, (grads_,))))
    return Reference(outputs, max_scales(outputs), REFERENCE_NUMPY)

  return reference


def _model(name, description, loss, inputs, parse, numpy_grads, torch_loss, tf_loss, flops,
           min_bytes) -> Workload:
  shape_for = _size_of(parse)
  return Workload(
      name=name, description=description, fn=loss,
      make_inputs=lambda shape, dtype, seed: inputs(*shape, dtype, seed), shape_for=shape_for,
      reference=_numpy_reference(numpy_grads),
      peers={"numpy": _numpy_value_and_grads(numpy_grads), "torch": torch_loss, "tf": tf_loss},
      bytes_moved=lambda shape, itemsize: min_bytes(*shape, itemsize),
      flops=lambda shape: flops(*shape),
      # Matmuls accumulate hundreds of products per output: ten times the elementwise slack.
      tolerance_factor=10.0, batch_args=(1, 2), bound="compute")


MLP = _model("mlp", "value + grads of a 784-W-W-10 ReLU MLP, softmax cross-entropy",
             nn.mlp_loss, nn.mlp_inputs, nn.parse_mlp_size, nn.mlp_value_and_grads_numpy,
             nn.mlp_loss_torch, nn.mlp_loss_tf, nn.mlp_flops, nn.mlp_min_bytes)

ATTENTION = _model(
    "attention", "value + grads of causal multi-head self-attention (DIM/64 heads), MSE",
    nn.attention_loss, nn.attention_inputs, nn.parse_attention_size,
    nn.attention_value_and_grads_numpy, nn.attention_loss_torch, nn.attention_loss_tf,
    nn.attention_flops, nn.attention_min_bytes)


def _mlp_train_reference(inputs: tuple[Any, ...]) -> Reference:
  params, x, labels = inputs
  params, x = _float64(params), np.asarray(x, np.float64)
  zeros = jax.tree.map(np.zeros_like, params)
  params, _, _, loss = nn.mlp_train_step_numpy(params, zeros, zeros, 1, x, labels,
                                               MODEL_LEARNING_RATE)
  outputs = tuple(np.asarray(o, np.float64) for o in flat_outputs((params, loss)))
  # Adam's first step is about -lr * sign(grad): where a gradient is within float32 rounding of
  # zero, any float32 engine may step a different way. So parameters are measured in steps
  # (error / lr; the tolerance, 0.1 in float32, is a tenth of a step: a missing or doubled update
  # fails), and the loss in thousandths of itself (0.1 of that: 1e-4 relative).
  scales = (*(MODEL_LEARNING_RATE for _ in outputs[:-1]), 1e-3 * abs(float(outputs[-1])))
  return Reference(outputs, scales, REFERENCE_NUMPY)


def _mlp_train_numpy(inputs: tuple[Any, ...], steps: int) -> Callable[[], Any]:
  params, x, labels = inputs
  carry = {"params": params, "mu": jax.tree.map(np.zeros_like, params),
           "nu": jax.tree.map(np.zeros_like, params), "t": 0}

  def call():
    loss = None
    for _ in range(steps):
      carry["t"] += 1
      carry["params"], carry["mu"], carry["nu"], loss = nn.mlp_train_step_numpy(
          carry["params"], carry["mu"], carry["nu"], carry["t"], x, labels, MODEL_LEARNING_RATE)
    return carry["params"], np.asarray(loss)

  return call


def _mlp_train_torch(torch: Any, tensors: list[Any], steps: int, compiled: bool):
  params, x, labels = tensors
  params = jax.tree.map(lambda t: t.detach().clone().requires_grad_(True), params)
  step = nn.make_mlp_train_step_torch(torch, params, MODEL_LEARNING_RATE)
  if compiled:
    step = torch.compile(step)

  def call():
    loss = None
    for _ in range(steps):
      loss = step(x, labels)
    return jax.tree.map(lambda t: t.detach(), params), loss.detach()

  return call


_MLP_TRAIN_OPTIMIZER = optax.adam(MODEL_LEARNING_RATE)
MLP_TRAIN = Workload(
    name="mlp_train", description="one optax Adam step of the MLP (value, grads, update)",
    fn=nn.make_mlp_train_step(_MLP_TRAIN_OPTIMIZER),
    make_inputs=lambda shape, dtype, seed: nn.mlp_inputs(*shape, dtype, seed), kind="train",
    shape_for=_size_of(nn.parse_mlp_size), reference=_mlp_train_reference,
    peers={"numpy": _mlp_train_numpy, "torch": _mlp_train_torch},
    bytes_moved=lambda shape, itemsize: nn.mlp_train_min_bytes(*shape, itemsize),
    flops=lambda shape: nn.mlp_train_flops(*shape), tolerance_factor=1e4, steps=1,
    optimizer=_MLP_TRAIN_OPTIMIZER, shardable=False, bound="compute")


# The tutorial's two losses: what the graph, export, cache and scale-out tools take.
TUTORIAL_WORKLOADS = ("muladd_sum", "abs_loss")

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    MULADD_SUM, ABS_LOSS, fit_workload("abs_loss"), fit_workload("linear_regression"), MLP,
    MLP_TRAIN, ATTENTION)}


def get_workload(name: str) -> Workload:
  """Looks up a workload by name.

  Raises:
    UsageError: naming the valid workloads.
  """
  if name not in WORKLOADS:
    raise UsageError(f"Unknown workload {name!r}. Valid: {', '.join(WORKLOADS)}.")
  return WORKLOADS[name]
