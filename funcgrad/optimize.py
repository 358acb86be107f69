"""Training loops with optax, four ways over one pure step, plus NumPy and torch.optim peers.

- `eager`: a Python loop calling the step without jit: every primitive of every step is
  dispatched on its own (PyTorch's way).
- `jit_step`: the step compiled once with `jax.jit`, parameters, optimiser state and the loss
  history donated so XLA updates them in place, called from a Python loop: one dispatch per step.
- `scan`: the whole fit compiled as one XLA program with `jax.lax.scan`, the optimiser's `init`
  included: one dispatch in all, returning the loss history. The loop runs SCAN_UNROLL steps per
  iteration and scalar optimiser state is widened per element, so XLA fuses consecutive steps
  (see `scan_loop`).
- `scan_fused`: the same program with the parameters and optimiser state raveled into one vector
  (see `scan_fused_loop`).

Every loop returns the final parameters and the loss before each update, so the styles can be
checked against each other and against the hand-written NumPy optimisers.
"""
import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from funcgrad.errors import UsageError
from funcgrad.graphs import count_fusions
from funcgrad.peers import import_peer
from funcgrad.problems import Problem

PEER_OPTIMIZERS = ("sgd", "adam")  # what the NumPy and torch peers implement


class LoopOutput(NamedTuple):
  """Final parameters and the loss before each of the `steps` updates."""

  params: Any
  losses: Any


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

  try:  # the loops call update(grads, state, params); a line search needs more (optax.lbfgs)
    # Abstractly: importing the workloads builds an optimiser before any JAX backend may start.
    jax.eval_shape(one_update, jax.ShapeDtypeStruct((2,), jnp.float32))
  except TypeError as e:
    raise UsageError(f"Optimizer {name!r} cannot run in these loops, which call "
                     f"update(grads, state, params): {str(e).splitlines()[0]}") from None
  return optimizer


def make_step(problem: Problem, optimizer: optax.GradientTransformation) -> Callable[..., Any]:
  """The pure step `(params, opt_state) -> (params, opt_state, loss)` every JAX loop runs."""
  loss = functools.partial(problem.loss, jnp)
  data = tuple(jnp.asarray(d) for d in problem.data)

  def step(params, opt_state):
    value, grad = jax.value_and_grad(loss)(params, *data)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step


def _start(problem: Problem, optimizer: optax.GradientTransformation):
  params = jnp.array(problem.init_params)  # a fresh buffer: the caller's array is never donated
  return params, optimizer.init(params)


def eager_loop(problem: Problem, optimizer: optax.GradientTransformation,
               steps: int) -> Callable[[], LoopOutput]:
  """A Python loop over the un-jitted step."""
  step = make_step(problem, optimizer)

  def run() -> LoopOutput:
    params, state = _start(problem, optimizer)
    losses = []
    for _ in range(steps):
      params, state, value = step(params, state)
      losses.append(value)
    return LoopOutput(params, jnp.stack(losses))

  return run


def jit_step_loop(problem: Problem, optimizer: optax.GradientTransformation,
                  steps: int) -> Callable[[], LoopOutput]:
  """A Python loop over the jitted step, with everything it updates donated.

  The loss history lives on the device and each step writes its loss into it: no host round
  trip per step, and no stacking of `steps` scalars at the end (a per-step cost of its own).
  """
  step = make_step(problem, optimizer)

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
  def step_and_record(params, opt_state, losses, t):
    params, opt_state, value = step(params, opt_state)
    return params, opt_state, losses.at[t].set(value), t + 1

  def run() -> LoopOutput:
    params, state = _start(problem, optimizer)
    losses, t = jnp.zeros(steps, jnp.result_type(params)), jnp.zeros((), jnp.int32)
    for _ in range(steps):
      params, state, losses, t = step_and_record(params, state, losses, t)
    return LoopOutput(params, losses)

  return run


SCAN_UNROLL = 4  # Adam steps per iteration of the `scan` loops' compiled `while`


def _scan_program(problem: Problem, optimizer: optax.GradientTransformation, steps: int,
                  fused: bool) -> Callable[[], LoopOutput]:
  """The jitted zero-argument fit behind `scan` and `scan_fused`.

  The optimiser's `init` runs inside the program: run eagerly, its handful of dispatches would
  cost more than the compiled steps of a whole short fit.
  """
  step = make_step(problem, optimizer)
  init_params = np.array(problem.init_params)

  def body(carry, _):
    params, state, value = step(*carry)
    return (params, state), value

  @jax.jit
  def fit() -> LoopOutput:
    params = jnp.asarray(init_params)
    carry = _widen_scalars_if_accepted(step, (params, optimizer.init(params)))
    if not fused:
      (params, _), losses = jax.lax.scan(body, carry, None, length=steps, unroll=SCAN_UNROLL)
      return LoopOutput(params, losses)
    flat, unravel = ravel_pytree(carry)

    def flat_body(flat, x):
      carry, value = body(unravel(flat), x)
      return ravel_pytree(carry)[0], value

    flat, losses = jax.lax.scan(flat_body, flat, None, length=steps, unroll=SCAN_UNROLL)
    return LoopOutput(unravel(flat)[0], losses)

  return fit


def _widen_scalars(carry):
  """Scalar optimiser state (Adam's step count) broadcast to the parameters' shape.

  Adam's bias correction is `1 - b**count`: from a scalar count XLA computes it in a kernel of
  its own (it does not fuse an expensive `power` into a consumer that would repeat it per
  element); from a count per element it fuses into the update. Parameters that are a tree of
  several arrays keep their scalar state (no one shape fits every leaf).
  """
  params, state = carry
  if not isinstance(params, jax.Array):
    return carry
  widened = jax.tree.map(
      lambda leaf: jnp.broadcast_to(leaf, params.shape) if jnp.ndim(leaf) == 0 else leaf, state)
  return params, widened


def _widen_scalars_if_accepted(step: Callable[..., Any], carry):
  """`_widen_scalars(carry)` when `step` takes the widened state and returns it with the same
  shapes and dtypes; else `carry` as it is (a random key, a count used as a predicate or an
  index, state whose shapes are not the parameters': e.g. noisy_sgd, novograd, lbfgs)."""
  widened = _widen_scalars(carry)
  try:
    out = jax.eval_shape(lambda c: step(*c)[:2], widened)
  except (TypeError, ValueError):
    return carry
  same = jax.tree.structure(out) == jax.tree.structure(widened) and all(
      (a.shape, a.dtype) == (jnp.shape(b), jnp.result_type(b))
      for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(widened), strict=True))
  return widened if same else carry


def scan_loop(problem: Problem, optimizer: optax.GradientTransformation,
              steps: int) -> Callable[[], LoopOutput]:
  """The whole fit, `init` included, as one compiled `lax.scan`: as few kernels per step as the
  maths allows.

  Two things bring the kernels down, both visible in the compiled HLO (`fusions_per_step`):
  scalar optimiser state is widened to the parameters' shape (`_widen_scalars`), so Adam's bias
  correction fuses into the update instead of running as kernels of its own; and the loop runs
  SCAN_UNROLL steps per iteration, so XLA fuses each step's elementwise updates with the next
  step's and shares one loop counter. With Adam on the tutorial's loss that is 9 kernels per 4
  steps (2.25 a step) against 8 a step without either. Integer state stays integer.
  """
  return _scan_program(problem, optimizer, steps, fused=False)


def scan_fused_loop(problem: Problem, optimizer: optax.GradientTransformation,
                    steps: int) -> Callable[[], LoopOutput]:
  """`scan_loop` with one flat vector as the loop's carry.

  Parameters and optimiser state are raveled into one vector (`ravel_pytree`), so optax's
  per-leaf updates become one elementwise kernel. The state rides in the parameters' dtype: an
  integer count is exact up to 2**24 steps in float32. On XLA:CPU this is slower than `scan`:
  the one kernel evaluates a concatenate element by element and recomputes the gradient in each
  segment of the vector (docs/PERFORMANCE.md has the measurements).

  Raises:
    UsageError: more than 2**24 steps with float32 parameters, or a random key in the state.
  """
  if steps > 2**24 and jnp.result_type(problem.init_params) == jnp.float32:
    raise UsageError(f"Invalid steps={steps} for scan_fused: the step count rides in float32, "
                     "exact up to 2**24 steps; use the scan loop.")
  state = jax.eval_shape(optimizer.init, jnp.asarray(problem.init_params))
  if any(jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) for leaf in jax.tree.leaves(state)):
    raise UsageError("scan_fused ravels the optimiser state into one vector, and this "
                     "optimiser's state holds a random key, which does not ravel; use the scan "
                     "loop.")
  return _scan_program(problem, optimizer, steps, fused=True)


def numpy_update(name: str, learning_rate: float) -> Callable[[np.ndarray, Any, int], Any]:
  """optax's SGD or Adam update rule, by hand in NumPy: `update(grad, state, t) -> (delta, state)`.

  Raises:
    UsageError: for optimisers other than sgd and adam.
  """
  if name == "sgd":
    return lambda grad, state, t: (-learning_rate * grad, state)
  if name == "adam":
    b1, b2, eps = 0.9, 0.999, 1e-8  # optax.adam's defaults

    def adam(grad, state, t):
      mu, nu = state if state is not None else (np.zeros_like(grad), np.zeros_like(grad))
      mu = b1 * mu + (1 - b1) * grad
      nu = b2 * nu + (1 - b2) * grad * grad
      mu_hat, nu_hat = mu / (1 - b1**t), nu / (1 - b2**t)
      return -learning_rate * mu_hat / (np.sqrt(nu_hat) + eps), (mu, nu)

    return adam
  raise UsageError(f"The NumPy and torch peers implement {', '.join(PEER_OPTIMIZERS)}, "
                   f"not {name!r}.")


def numpy_loop(problem: Problem, name: str, learning_rate: float, steps: int,
               dtype: Any = np.float32) -> Callable[[], LoopOutput]:
  """The hand-written NumPy loop (float64 with `dtype=np.float64`: the reference)."""
  update = numpy_update(name, learning_rate)
  data = tuple(np.asarray(d, dtype) for d in problem.data)

  def run() -> LoopOutput:
    params, state = np.array(problem.init_params, dtype), None
    losses = np.empty(steps, dtype)
    for t in range(1, steps + 1):
      losses[t - 1], grad = problem.numpy_loss_and_grad(params, *data)
      delta, state = update(grad, state, t)
      params = (params + delta).astype(dtype)
    return LoopOutput(params, losses)

  return run


def torch_loop(problem: Problem, name: str, learning_rate: float,
               steps: int) -> Callable[[], LoopOutput]:
  """`torch.optim.SGD` / `torch.optim.Adam` with optax's hyper-parameters, on the CPU.

  Raises:
    UsageError: for optimisers other than sgd and adam.
    PeerUnavailableError: when torch is not installed.
  """
  torch = import_peer("torch")
  numpy_update(name, learning_rate)  # the same optimiser check and message as the NumPy peer
  data = tuple(torch.from_numpy(d) for d in problem.data)

  def run() -> LoopOutput:
    params = torch.tensor(problem.init_params, requires_grad=True)
    if name == "sgd":
      optimizer = torch.optim.SGD([params], lr=learning_rate)
    else:
      optimizer = torch.optim.Adam([params], lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(steps):
      optimizer.zero_grad()
      loss = problem.loss(torch, params, *data)
      loss.backward()
      optimizer.step()
      losses.append(loss.detach())
    return LoopOutput(params.detach(), torch.stack(losses))

  return run


def _optax_loop(builder):
  def build(problem, optimizer_name, learning_rate, steps):
    return builder(problem, make_optimizer(optimizer_name, learning_rate), steps)

  return build


# Loop style -> builder(problem, optimizer_name, learning_rate, steps).
LOOPS = {
    "eager": _optax_loop(eager_loop),
    "jit_step": _optax_loop(jit_step_loop),
    "scan": _optax_loop(scan_loop),
    "scan_fused": _optax_loop(scan_fused_loop),
    "numpy": numpy_loop,
    "torch": torch_loop,
}


def make_loop(style: str, problem: Problem, optimizer_name: str, learning_rate: float,
              steps: int) -> Callable[[], LoopOutput]:
  """The zero-argument callable that runs one whole fit in `style` (one of LOOPS).

  Raises:
    UsageError: for an unknown style or optimiser, a learning rate <= 0 or steps < 1.
  """
  if steps < 1:
    raise UsageError(f"Invalid steps={steps}: it must be >= 1.")
  make_optimizer(optimizer_name, learning_rate)  # validates name and rate for every style
  if style not in LOOPS:
    raise UsageError(f"Unknown loop {style!r}. Valid: {', '.join(LOOPS)}.")
  return LOOPS[style](problem, optimizer_name, learning_rate, steps)


def _while_loops(hlo: str) -> list[tuple[str, int]]:
  """Each `while` of an optimised HLO module: its body's text and XLA's known trip count."""
  loops = []
  for line in hlo.splitlines():
    if not (name := re.search(r" while\(.*?body=%?([\w.\-]+)", line)):
      continue
    trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
    body = re.search(rf"^%?{re.escape(name.group(1))} .*?\{{\n(.*?)^\}}", hlo, re.S | re.M)
    if body and trips:
      loops.append((body.group(1), int(trips.group(1))))
  return loops


def fusions_per_step(style: str, problem: Problem, optimizer_name: str, learning_rate: float,
                     steps: int) -> float | None:
  """Fused kernels XLA runs per step of a compiled loop, counted in its optimised HLO.

  For `scan` and `scan_fused`, the fusions of each `while` body times its trip count, over
  `steps` (an unrolled body runs several steps per trip); for `jit_step`, the fusions of the
  compiled step. None for the loops that are not one XLA program.
  """
  optimizer = make_optimizer(optimizer_name, learning_rate)
  if style in ("scan", "scan_fused"):
    build = scan_fused_loop if style == "scan_fused" else scan_loop
    hlo = build(problem, optimizer, steps).lower().compile()
    return sum(count_fusions(body) * trips for body, trips in _while_loops(hlo.as_text())) / steps
  if style == "jit_step":
    step = jax.jit(make_step(problem, optimizer))
    params = jnp.asarray(problem.init_params)
    return float(count_fusions(step.lower(params, optimizer.init(params)).compile().as_text()))
  return None


def to_numpy(output: LoopOutput) -> LoopOutput:
  """Host NumPy copies of a loop's outputs, whatever framework produced them."""
  def host(x):
    return x.numpy() if hasattr(x, "detach") else np.asarray(x)

  return LoopOutput(host(output.params), host(output.losses))
