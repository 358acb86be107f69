"""The fits as training workloads: a whole Adam fit of a `funcgrad.problems` problem per call.

One call is `steps` optimiser steps, the parameters and state carried from call to call; every
engine is checked against the same fit run in float64 NumPy (optax's Adam written out).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import optimize, problems
from funcgrad.bench.workloads.model import (
  REFERENCE_NUMPY,
  Reference,
  Workload,
  max_scales,
  tolerance,
  two_d_size,
)
from funcgrad.shapes import Shape

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
      kind="train", shape_for=(lambda size: (2,)) if problem_name == "abs_loss" else two_d_size,
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
