"""The fits as training workloads: `steps` optimiser steps of a `funcgrad.problems` problem per
call.

One call is `fit.steps` steps, the parameters and state carried from call to call, so the first
call is the whole fit from the problem's initial parameters. For SGD and Adam every engine is
checked against the same fit run in float64 NumPy (optax's rule written out), and the NumPy and
torch peers run it; other optax optimisers are checked against a float64 re-run of the step.
"""

import functools

import jax.numpy as jnp
import numpy as np

from funcgrad import optimize, problems
from funcgrad.bench.workloads.model import (
  REFERENCE_NUMPY,
  Reference,
  Workload,
  max_scales,
  tolerance,
  two_d_size,
)

FIT_OPTIMIZER, FIT_LEARNING_RATE, FIT_STEPS = "adam", 0.01, 1000


def fit_workload(problem_name: str, steps: int = FIT_STEPS) -> Workload:
  """`fit_problem_workload` of the benchmark's fit: Adam, learning rate 0.01, `steps` a call."""
  return fit_problem_workload(problem_name,
                              optimize.Fit(FIT_OPTIMIZER, FIT_LEARNING_RATE, steps))


def fit_problem_workload(problem_name: str, fit: optimize.Fit) -> Workload:
  """A fit of a `problems` problem as a training workload: one call is `fit.steps` steps.

  `abs_loss` has two parameters whatever the size (the tutorial's x0 = [2, 3]); the least-squares
  fit takes NxD (N samples of D features).

  Raises:
    UsageError: an unknown problem.
  """
  problem = problems.get_problem(problem_name, (4, 2))  # its loss functions; data come per size

  def make_inputs(shape, dtype, seed):
    made = problems.get_problem(problem_name, shape, seed)
    return tuple(np.asarray(a).astype(dtype) for a in (made.init_params, *made.data))

  def numpy_peer(inputs, steps):
    del steps  # the fit's own
    params, *data = inputs
    return functools.partial(optimize.numpy_steps, problem.numpy_loss_and_grad, fit,
                             {"params": params}, tuple(data))

  def reference(inputs):
    params, *data = (np.asarray(a, np.float64) for a in inputs)
    outputs = optimize.numpy_steps(problem.numpy_loss_and_grad, fit, {"params": params},
                                   tuple(data))
    outputs = tuple(np.asarray(o, np.float64) for o in outputs)
    return Reference(outputs, tuple(max(1.0, s) for s in max_scales(outputs)), REFERENCE_NUMPY)

  def torch_peer(torch, tensors, steps, compiled):
    del steps  # the fit's own
    return optimize.torch_steps(problem.loss, fit, torch, tensors, compiled)

  peers = {"numpy": numpy_peer, "torch": torch_peer} if fit.has_peers else {}
  # abs_loss has a kink at its optimum: there float32 rounding can flip a gradient's sign, so
  # float32 trajectories may end up to about one learning rate apart (relative to 1).
  tolerance_factor = 10.0 if problem.smooth else fit.learning_rate / tolerance(np.float32)
  return Workload(
      name=f"fit_{problem_name}",
      description=f"{fit.steps} {fit.optimizer} steps on {problem_name}",
      fn=optimize.train_step(functools.partial(problem.loss, jnp), fit.transformation),
      make_inputs=make_inputs, kind="train",
      shape_for=(lambda size: (2,)) if problem_name == "abs_loss" else two_d_size,
      reference=reference if fit.has_peers else None, peers=peers,
      tolerance_factor=tolerance_factor, steps=fit.steps, optimizer=fit.transformation,
      shardable=False)
