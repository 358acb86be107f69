"""Fitting with optax: one fit description, one pure step, one scan program, NumPy and torch peers.

A fit is `Fit(optimizer, learning_rate, steps)`: which optax alias, its learning rate, and how
many steps one call runs (its optax transformation is built once, when the description is made).
What runs it:

- `train_step(loss, optimizer)`: the pure step `(params, opt_state, *data) -> (params, opt_state,
  loss)` every JAX engine runs: eagerly (`eager`), jitted with its state donated (`jit`), or
  `steps` at a time inside one compiled `lax.scan` (`scan_steps`: `jit_scan`, `jit_scan_fused`).
- `numpy_update` / `numpy_steps`: optax's SGD and Adam written out in NumPy (the float64
  reference and the NumPy peer); `torch_steps`: `torch.optim.SGD` / `Adam` (the torch peer).

Adam's constants are written once (`ADAM_B1`, `ADAM_B2`, `ADAM_EPS`: optax.adam's defaults).
This module imports neither the runner nor the engines: `funcgrad.bench` runs these programs.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from funcgrad.errors import UsageError

PEER_OPTIMIZERS = ("sgd", "adam")  # what the NumPy and torch peers implement
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults, for every Adam here
SCAN_UNROLL = 4  # optimiser steps per iteration of the scan program's compiled `while`
MAX_FUSED_STEPS = 2**24  # the fused scan's float32 step count is exact up to here


def optimizer_names() -> tuple[str, ...]:
  """The optax aliases whose first argument is `learning_rate` (usable as --optimizer)."""
  names = []
  for name in sorted(dir(optax)):
    fn = getattr(optax, name)
    if name.startswith("_") or inspect.isclass(fn) or not callable(fn):
      continue
    try:
      first = next(iter(inspect.signature(fn).parameters), None)
    except (TypeError, ValueError):
      continue
    if first == "learning_rate":
      names.append(name)
  return tuple(names)


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
  """`optax.<name>(learning_rate)`.

  Raises:
    UsageError: for an unknown optimiser (listing the valid ones), a learning rate <= 0, or an
      optimiser whose update needs more than (grads, state, params).
  """
  if name not in optimizer_names():
    raise UsageError(f"Unknown optimizer {name!r}. Valid (optax aliases taking a learning rate):"
                     f" {', '.join(optimizer_names())}.")
  if not learning_rate > 0:
    raise UsageError(f"Invalid learning_rate={learning_rate}: it must be > 0.")
  optimizer = getattr(optax, name)(learning_rate)
  def one_update(params):
    return optimizer.update(params, optimizer.init(params), params)

  try:  # the steps call update(grads, state, params); a line search needs more (optax.lbfgs)
    # Abstractly: importing the workloads builds an optimiser before any JAX backend may start.
    jax.eval_shape(one_update, jax.ShapeDtypeStruct((2,), jnp.float32))
  except TypeError as e:
    raise UsageError(f"Optimizer {name!r} cannot run in these loops, which call "
                     f"update(grads, state, params): {str(e).splitlines()[0]}") from None
  return optimizer


@dataclasses.dataclass(frozen=True)
class Fit:
  """What a fit runs: an optax alias, its learning rate, and the steps of one call.

  Checked when made; `transformation` is the optax optimiser, built once here.

  Raises:
    UsageError: steps < 1, an unknown optimiser, a learning rate <= 0 (see `make_optimizer`).
  """

  optimizer: str = "adam"
  learning_rate: float = 0.01
  steps: int = 1000
  transformation: optax.GradientTransformation = dataclasses.field(
      init=False, repr=False, compare=False)

  def __post_init__(self):
    if not self.steps >= 1:
      raise UsageError(f"Invalid steps={self.steps}: it must be >= 1.")
    object.__setattr__(self, "transformation",
                       make_optimizer(self.optimizer, self.learning_rate))

  @property
  def has_peers(self) -> bool:
    """Whether the NumPy and torch peers implement this optimiser."""
    return self.optimizer in PEER_OPTIMIZERS

  def describe(self) -> str:
    return f"{self.optimizer}(learning_rate={self.learning_rate:g})"


def train_step(loss: Callable[..., Any],
               optimizer: optax.GradientTransformation) -> Callable[..., Any]:
  """The pure step `(params, opt_state, *data) -> (params, opt_state, loss)`."""
  def step(params, opt_state, *data):
    value, grad = jax.value_and_grad(loss)(params, *data)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step


def _widen_scalars(params: Any, state: Any) -> Any:
  """Scalar optimiser state (Adam's step count) broadcast to the parameters' shape.

  Adam's bias correction is `1 - b**count`: from a scalar count XLA computes it in a kernel of
  its own (it does not fuse an expensive `power` into a consumer that would repeat it per
  element); from a count per element it fuses into the update. Parameters that are a tree of
  several arrays keep their scalar state (no one shape fits every leaf).
  """
  if not isinstance(params, jax.Array):
    return state
  return jax.tree.map(
      lambda leaf: jnp.broadcast_to(leaf, params.shape) if jnp.ndim(leaf) == 0 else leaf, state)


def scan_state(step: Callable[..., Any], params: Any, state: Any, *data: Any) -> Any:
  """The optimiser state the scan program carries: `state` with its scalars widened to the
  parameters' shape when `step` takes the widened state and returns it with the same shapes and
  dtypes; else `state` as it is (a random key, a count used as a predicate or an index, state
  whose shapes are not the parameters': e.g. noisy_sgd, novograd, lbfgs)."""
  widened = _widen_scalars(params, state)
  try:
    out = jax.eval_shape(lambda s: step(params, s, *data)[1], widened)
  except (TypeError, ValueError):
    return state
  same = jax.tree.structure(out) == jax.tree.structure(widened) and all(
      (a.shape, a.dtype) == (jnp.shape(b), jnp.result_type(b))
      for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(widened), strict=True))
  return widened if same else state


def check_fused(params: Any, state: Any, steps: int) -> None:
  """Refuses what the fused scan cannot carry in one vector.

  Raises:
    UsageError: more than 2**24 steps with float32 parameters, or a random key in the state.
  """
  if steps > MAX_FUSED_STEPS and jnp.result_type(*jax.tree.leaves(params)) == jnp.float32:
    raise UsageError(f"Invalid steps={steps} for scan_fused: the step count rides in float32, "
                     "exact up to 2**24 steps; use the scan loop.")
  if any(jax.dtypes.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key)
         for leaf in jax.tree.leaves(state)):
    raise UsageError("scan_fused ravels the optimiser state into one vector, and this "
                     "optimiser's state holds a random key, which does not ravel; use the scan "
                     "loop.")


def scan_steps(step: Callable[..., Any], steps: int, fused: bool = False) -> Callable[..., Any]:
  """`steps` calls of `step` as one `lax.scan`: `(params, state, *data) -> (params, state,
  losses)`, to be jitted (the engines donate params and state).

  As few kernels per step as the maths allows, both visible in the compiled HLO
  (`graphs.fusions_per_step`): the loop runs SCAN_UNROLL steps per iteration, so XLA fuses each
  step's elementwise updates with the next step's and shares one loop counter; and, given the
  widened state of `scan_state`, Adam's bias correction fuses into the update. With Adam on the
  tutorial's loss that is 9 kernels per 4 steps (2.25 a step) against 8 a step without either.

  `fused=True` ravels parameters and state into one flat vector (`ravel_pytree`), so optax's
  per-leaf updates become one elementwise kernel; the state rides in the parameters' dtype (an
  integer count is exact up to 2**24 steps in float32: see `check_fused`). On XLA:CPU this is
  slower than the unfused scan: the one kernel evaluates a concatenate element by element and
  recomputes the gradient in each segment of the vector (docs/PERFORMANCE.md).
  """
  def run(params, state, *data):
    def body(carry, _):
      params, state, value = step(*carry, *data)
      return (params, state), value

    if not fused:
      (params, state), losses = jax.lax.scan(body, (params, state), None, length=steps,
                                             unroll=SCAN_UNROLL)
      return params, state, losses
    flat, unravel = ravel_pytree((params, state))

    def flat_body(flat, x):
      carry, value = body(unravel(flat), x)
      return ravel_pytree(carry)[0], value

    flat, losses = jax.lax.scan(flat_body, flat, None, length=steps, unroll=SCAN_UNROLL)
    params, state = unravel(flat)
    return params, state, losses

  return run


def numpy_update(name: str, learning_rate: float) -> Callable[[np.ndarray, Any, int], Any]:
  """optax's SGD or Adam update rule, by hand in NumPy: `update(grad, state, t) -> (delta, state)`.

  Raises:
    UsageError: for optimisers other than sgd and adam.
  """
  if name == "sgd":
    return lambda grad, state, t: (-learning_rate * grad, state)
  if name == "adam":
    def adam(grad, state, t):
      mu, nu = state if state is not None else (np.zeros_like(grad), np.zeros_like(grad))
      mu = ADAM_B1 * mu + (1 - ADAM_B1) * grad
      nu = ADAM_B2 * nu + (1 - ADAM_B2) * grad * grad
      mu_hat, nu_hat = mu / (1 - ADAM_B1**t), nu / (1 - ADAM_B2**t)
      return -learning_rate * mu_hat / (np.sqrt(nu_hat) + ADAM_EPS), (mu, nu)

    return adam
  raise UsageError(f"The NumPy and torch peers implement {', '.join(PEER_OPTIMIZERS)}, "
                   f"not {name!r}.")


def numpy_steps(loss_and_grad: Callable[..., tuple[Any, np.ndarray]], fit: Fit,
                carry: dict[str, Any], data: tuple[np.ndarray, ...]) -> tuple[np.ndarray, Any]:
  """`fit.steps` NumPy steps from `carry` (`params`; `state` and the step count `t` once
  started), which they update; returns the parameters and the last step's loss (before it)."""
  update = numpy_update(fit.optimizer, fit.learning_rate)
  params, loss = carry["params"], None
  for _ in range(fit.steps):
    carry["t"] = carry.get("t", 0) + 1
    loss, grad = loss_and_grad(params, *data)
    delta, carry["state"] = update(grad, carry.get("state"), carry["t"])
    params = (params + delta).astype(params.dtype)
  carry["params"] = params
  return params, np.asarray(loss)


def torch_optimizer(torch: Any, fit: Fit, params: Any) -> Any:
  """`torch.optim.SGD` / `torch.optim.Adam` over `params` with optax's hyper-parameters.

  Raises:
    UsageError: for optimisers other than sgd and adam.
  """
  numpy_update(fit.optimizer, fit.learning_rate)  # the same check and message as the NumPy peer
  if fit.optimizer == "sgd":
    return torch.optim.SGD([params], lr=fit.learning_rate)
  return torch.optim.Adam([params], lr=fit.learning_rate, betas=(ADAM_B1, ADAM_B2), eps=ADAM_EPS)


def torch_steps(loss: Callable[..., Any], fit: Fit, torch: Any, tensors: list[Any],
                compiled: bool = False) -> Callable[[], Any]:
  """A call of `fit.steps` torch steps of `loss(torch, params, *data)`, carrying the parameters
  and optimiser state from call to call; returns the parameters and the last step's loss."""
  params, *data = tensors
  params = params.detach().clone().requires_grad_(True)
  optimizer = torch_optimizer(torch, fit, params)
  fn = functools.partial(loss, torch)
  if compiled:
    fn = torch.compile(fn, dynamic=False)

  def call():
    value = None
    for _ in range(fit.steps):
      optimizer.zero_grad()
      value = fn(params, *data)
      value.backward()
      optimizer.step()
    return params.detach(), value.detach()

  return call
