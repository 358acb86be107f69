"""Problems to fit with an optimiser: the tutorial's loss, and one that scales with size.

Each `Problem` carries its initial parameters and data (from a seed), the loss written once
against a tiny array namespace (`ops.sum`, `ops.abs`, `ops.mean`) so JAX and torch run the same
expression, a hand-written NumPy loss-and-gradient, and the known optimum to check a fit against.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from funcgrad import grads, losses
from funcgrad._types import Shape
from funcgrad.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Problem:
  """A loss to minimise over one parameter array.

  Attributes:
    name: the flag value.
    init_params: where every optimiser starts (float32).
    data: the loss's other arguments (float32).
    loss: `loss(ops, params, *data)`; `ops` provides sum, abs, mean (jnp or torch).
    numpy_loss_and_grad: hand-written `(loss, grad)` in NumPy.
    distance_to_optimum: how far parameters are from the (nearest) known optimum.
    optimum_description: one line for reports.
    smooth: False where the loss has kinks at its optimum (|.|): there float32 rounding can flip
      a gradient's sign, so float32 trajectories may differ by up to about one step (the fit
      workloads' tolerance allows one learning rate then).
  """

  name: str
  init_params: np.ndarray
  data: tuple[np.ndarray, ...]
  loss: Callable[..., Any]
  numpy_loss_and_grad: Callable[..., tuple[Any, np.ndarray]]
  distance_to_optimum: Callable[[np.ndarray], float]
  optimum_description: str
  smooth: bool = True

  def optimum_tolerance(self, learning_rate: float | None = None) -> float:
    """How close to the optimum a finished fit must be to count as having reached it.

    Fixed per problem: a tolerance that grew with the step size would call a diverging fit
    (learning rate 100: loss 25 -> 11) a success. Near the kink of |.| a converged fit still
    oscillates by about one step, so a non-smooth problem is reached only by steps well under
    its tolerance.
    """
    del learning_rate  # kept for callers; the tolerance must not depend on it
    return 1e-3 if self.smooth else 2e-2


def abs_loss_problem() -> Problem:
  """The tutorial's loss sum|2x^2 + 3 - target| from x0 = [2, 3], target = [3, 4].

  The minimum, 0, is at 2x^2 + 3 = target: x = [0, +-sqrt(0.5)].
  """
  optimum = np.array([0.0, np.sqrt(0.5)])
  return Problem(
      name="abs_loss", init_params=np.array([2.0, 3.0], np.float32),
      data=(np.array([3.0, 4.0], np.float32),), loss=losses.abs_loss,
      numpy_loss_and_grad=grads.abs_loss_grads_numpy,
      distance_to_optimum=lambda x: float(np.max(np.abs(np.abs(x) - optimum))),
      optimum_description="x = [0, +-sqrt(0.5)], loss 0", smooth=False)


def _least_squares_numpy(w, features, labels):
  residual = features @ w - labels
  return np.mean(residual * residual), 2.0 / len(labels) * (features.T @ residual)


def linear_regression_problem(n: int = 1000, d: int = 10, seed: int = 0) -> Problem:
  """Least squares mean((X w - y)^2) on generated data: X ~ N(0, 1), y = X w_true + noise.

  The optimum is `numpy.linalg.lstsq(X, y)`.
  """
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((n, d)).astype(np.float32)
  w_true = rng.standard_normal(d).astype(np.float32)
  labels = (features @ w_true + 0.1 * rng.standard_normal(n)).astype(np.float32)
  solution = np.linalg.lstsq(features.astype(np.float64), labels.astype(np.float64), rcond=None)[0]
  return Problem(
      name="linear_regression", init_params=np.zeros(d, np.float32), data=(features, labels),
      loss=losses.least_squares, numpy_loss_and_grad=_least_squares_numpy,
      distance_to_optimum=lambda w: float(np.max(np.abs(w - solution))),
      optimum_description=f"numpy.linalg.lstsq solution of a {n}x{d} system")


def _linear_regression_for(shape: Shape, seed: int) -> Problem:
  n, d = shape if len(shape) == 2 else (shape[0], 1)
  return linear_regression_problem(n, d, seed)


# Problem name -> `make(shape, seed)`; abs_loss has the tutorial's two parameters whatever the
# shape, linear_regression fits N samples x D features (an N-vector: one feature).
PROBLEMS: dict[str, Callable[[Shape, int], Problem]] = {
    "abs_loss": lambda shape, seed: abs_loss_problem(),
    "linear_regression": _linear_regression_for,
}


def get_problem(name: str, shape: Shape = (1000, 10), seed: int = 0) -> Problem:
  """The problem `name` at `shape` (samples x features; ignored by abs_loss) from `seed`.

  Raises:
    UsageError: naming the valid problems.
  """
  if name not in PROBLEMS:
    raise UsageError(f"Unknown problem {name!r}. Valid: {', '.join(PROBLEMS)}.")
  return PROBLEMS[name](tuple(shape), seed)
