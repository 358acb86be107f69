"""`funcgrad.compare` on real model code: Equinox, Flax NNX and Linen, Haiku, optax, random keys,
bfloat16, static and keyword arguments, has_aux, a jitted function, a torch version.

Each test asserts the rows are ok, what they were checked against, and that a wrong function (its
gradient's sign flipped by a `jax.custom_vjp`) is still caught and never timed.
"""

import equinox as eqx
import flax.linen as linen
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import funcgrad
from funcgrad.bench.workloads import user
from funcgrad.errors import UsageError

FAST = {"min_run_time": 0.01}
JIT = {"min_run_time": 0.01, "engines": "jit"}  # every row has the same reference: one will do


@jax.custom_vjp
def flipped(value):
  """The identity, whose gradient has its sign flipped: every gradient through it is wrong."""
  return value


flipped.defvjp(lambda value: (value, None), lambda _, g: (-g,))


@jax.custom_vjp
def flipped_in_float32(value):
  """The identity; its gradient's sign flipped in float32 only (right in the float64 re-run)."""
  return value


flipped_in_float32.defvjp(lambda value: (value, jnp.zeros((), value.dtype)),
                          lambda like, g: (-g if like.dtype == jnp.float32 else g,))


def _statuses(comparison):
  return {r.engine: r.status for r in comparison.results}


def _assert_ok(comparison, checked_against):
  for r in comparison.results:
    assert r.status == "ok", (r.engine, r.error)
    assert r.reference.startswith(checked_against), r.reference
    assert r.median_s > 0


def _assert_caught(comparison):
  for r in comparison.results:
    assert r.status == "wrong", (r.engine, r.status, r.error)
    assert r.median_s is None and "not timed" in r.error


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of a framework's model
def test_equinox_mlp():
  mlp = eqx.nn.MLP(8, 1, 16, 2, key=jax.random.key(0))  # its activations are leaves: static
  x = jnp.linspace(-1, 1, 32 * 8).reshape(32, 8)
  y = jnp.sin(x[:, :1])

  def loss(model, x, y):
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)

  comparison = funcgrad.compare(loss, mlp, x, y, **JIT)
  _assert_ok(comparison, "jax float64 re-run; gradients checked by float64 finite differences")
  assert comparison.results[0].workload == "loss(MLP 433 params, x 32x8, y 32x1)"
  _assert_caught(funcgrad.compare(lambda m, x, y: flipped(loss(m, x, y)), mlp, x, y, **JIT))


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.linear = nnx.Linear(4, 8, rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.drop = nnx.Dropout(0.3, rngs=rngs)
    self.out = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(self.drop(jax.nn.relu(self.bn(self.linear(x)))))


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of a framework's model
def test_nnx_model_with_dropout_and_batchnorm():
  model = _Net(nnx.Rngs(0))  # train mode: dropout draws from the module's Rngs key and counter
  x = jnp.linspace(-2, 2, 16 * 4).reshape(16, 4)

  def loss(model, x):
    return jnp.mean(model(x) ** 2)

  comparison = funcgrad.compare(loss, model, x, **JIT)  # the eager row: tests further down
  # Random (a key among the leaves): jit against eager with the same key, gradients against
  # finite differences of the value with that key.
  _assert_ok(comparison, "jax eager, same keys (random function); gradients checked")
  assert comparison.results[0].rtol == 1e-4
  _assert_caught(funcgrad.compare(lambda m, x: flipped(loss(m, x)), model, x, **JIT))


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of a framework's model
def test_linen_model_with_integer_labels():
  model = linen.Sequential([linen.Dense(8), linen.tanh, linen.Dense(3)])
  x = jnp.linspace(-1, 1, 16 * 4).reshape(16, 4)
  labels = jnp.arange(16) % 3
  params = model.init(jax.random.key(0), x)

  def loss(params, x, labels):
    logp = jax.nn.log_softmax(model.apply(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

  _assert_ok(funcgrad.compare(loss, params, x, labels, argnums=(0, 2), **JIT),
             "jax float64 re-run")  # argnums 2 (int32 labels) passes through undifferentiated
  _assert_caught(funcgrad.compare(lambda p, x, t: flipped(loss(p, x, t)), params, x, labels,
                                  **JIT))


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of a framework's model
def test_haiku_model_with_an_rng():
  with jax.numpy_rank_promotion("allow"):  # haiku's bias add broadcasts by rank
    net = hk.transform(lambda x: hk.Linear(1)(hk.dropout(hk.next_rng_key(), 0.5,
                                                         jax.nn.relu(hk.Linear(8)(x)))))
    x = jnp.linspace(-1, 1, 16 * 4).reshape(16, 4)
    params = net.init(jax.random.PRNGKey(0), x)

    def loss(params, key, x):
      return jnp.mean(net.apply(params, key, x) ** 2)

    key = jax.random.PRNGKey(1)  # a legacy uint32[2] key: seen through random_wrap
    _assert_ok(funcgrad.compare(loss, params, key, x, **JIT), "jax eager, same keys")
    _assert_caught(funcgrad.compare(lambda p, k, x: flipped(loss(p, k, x)), params, key, x,
                                    **JIT))


def test_optax_training_step():
  optimizer = optax.adam(1e-2)
  x = jnp.linspace(-1, 1, 32 * 4).reshape(32, 4)
  y = jnp.sum(x, axis=1) + 1  # no gradient near 0: Adam would amplify its rounding
  params = {"w": jnp.full((4,), 0.1), "b": jnp.zeros(())}
  state = optimizer.init(params)  # holds an int32 step count

  def step(params, state, x, y, wrong=False):
    def loss(p):
      value = jnp.mean((x @ p["w"] + p["b"] - y) ** 2)
      return flipped_in_float32(value) if wrong else value

    value, grads = jax.value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(params, updates), state, value

  _assert_ok(funcgrad.compare(step, params, state, x, y, value_and_grad=False, **JIT),
             "jax float64 re-run")
  _assert_caught(funcgrad.compare(step, params, state, x, y, kwargs={"wrong": True},
                                  static_argnames="wrong", value_and_grad=False, **JIT))


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of a framework's model
@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "legacy"])
def test_random_function_with_either_key_kind(make_key):
  def noisy(w, key):
    return jnp.sum(jnp.tanh(w + 0.1 * jax.random.normal(key, w.shape)) ** 2)

  w, key = jnp.linspace(-1, 1, 64), make_key(0)
  _assert_ok(funcgrad.compare(noisy, w, key, **JIT), "jax eager, same keys (random function)")
  _assert_caught(funcgrad.compare(lambda w, k: flipped(noisy(w, k)), w, key, **JIT))


def test_bfloat16_is_checked_at_bfloat16_tolerances():
  def loss(w, x):
    return jnp.sum(jnp.tanh(x @ w) ** 2)

  w = jnp.linspace(-1, 1, 64 * 8).reshape(64, 8).astype(jnp.bfloat16)
  x = jnp.linspace(-1, 1, 16 * 64).reshape(16, 64).astype(jnp.bfloat16)
  comparison = funcgrad.compare(loss, w, x, **JIT)
  _assert_ok(comparison, "jax float64 re-run")
  assert {(r.dtype, r.rtol, r.atol) for r in comparison.results} == {("bfloat16", 5e-2, 1e-3)}
  _assert_caught(funcgrad.compare(lambda w, x: flipped(loss(w, x)), w, x, **JIT))


def test_saturated_gradient_and_float64_inputs_pass_on_atol():
  def loss(x):
    return jnp.sum(jnp.tanh(50 * x))  # float32: gradient 0; float64: about 4e-42

  comparison = funcgrad.compare(loss, np.ones(16), **FAST)  # float64 input, x64 off: float32
  _assert_ok(comparison, "jax float64 re-run")
  assert {r.dtype for r in comparison.results} == {"float32"}


def test_static_and_keyword_arguments():
  def loss(w, depth, x, scale=1.0, activation=jax.nn.relu):
    for _ in range(depth):  # a Python loop: depth must be static
      x = activation(x @ w)
    return scale * jnp.sum(x**2)

  w, x = jnp.eye(4) * 0.9 + 0.05, jnp.linspace(-1, 1, 32).reshape(8, 4)
  kwargs = {"scale": jnp.float32(2.0), "activation": jnp.tanh}
  comparison = funcgrad.compare(loss, w, 3, x, static_argnums=1, kwargs=kwargs, **JIT)
  _assert_ok(comparison, "jax float64 re-run")
  assert comparison.results[0].workload == "loss(w 4x4, depth=3, x 8x4, scale=scalar, " \
      "activation=tanh)"
  _assert_caught(funcgrad.compare(lambda w, d, x, **kw: flipped(loss(w, d, x, **kw)), w, 3, x,
                                  static_argnums=1, kwargs=kwargs, **JIT))


def test_has_aux():
  def loss(w, x):
    y = jnp.tanh(x @ w)
    return jnp.sum(y**2), {"mean": jnp.mean(y), "steps": 3}

  w, x = jnp.eye(4) * 0.5, jnp.linspace(-1, 1, 32).reshape(8, 4)
  _assert_ok(funcgrad.compare(loss, w, x, has_aux=True, **JIT), "jax float64 re-run")
  with pytest.raises(UsageError, match="has_aux=True"):
    funcgrad.compare(loss, w, x, **FAST)  # a (value, aux) pair without has_aux
  _assert_caught(funcgrad.compare(lambda w, x: (flipped(loss(w, x)[0]), loss(w, x)[1]), w, x,
                                  has_aux=True, **JIT))


def test_a_jitted_function_runs_eagerly_in_the_eager_row():
  calls = {"python": 0}

  def loss(w, x):
    calls["python"] += 1  # once per trace under jit; once per call eagerly
    return jnp.sum(jnp.tanh(x @ w) ** 2)

  jitted = jax.jit(loss)
  assert user.inner_function(jitted) is loss
  w, x = jnp.eye(4) * 0.5, jnp.linspace(-1, 1, 32).reshape(8, 4)
  comparison = funcgrad.compare(jitted, w, x, **FAST)
  _assert_ok(comparison, "jax float64 re-run")
  eager = next(r for r in comparison.results if r.engine == "eager")
  assert calls["python"] > eager.blocks * eager.calls_per_block  # it ran op by op each call
  _assert_caught(funcgrad.compare(jax.jit(lambda w, x: flipped(loss(w, x))), w, x, **JIT))


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of eager dispatch
def test_eager_scan_recompiles_and_printing_are_said():
  def loss(w, xs):
    jax.debug.print("step")
    final, _ = jax.lax.scan(lambda c, x: (jnp.tanh(c @ w + x), None), jnp.zeros(4), xs)
    return jnp.sum(final**2)

  comparison = funcgrad.compare(loss, jnp.eye(4) * 0.5, jnp.ones((6, 4)), **FAST)
  _assert_ok(comparison, "jax float64 re-run")
  rows = {r.engine: r for r in comparison.results}
  assert rows["eager"].compiles_per_call >= 1 and rows["jit"].compiles_per_call == 0
  notes = "\n".join(comparison.notes)
  assert "eager recompiles in its steady state" in notes
  assert notes.count("prints (print or jax.debug.print)") == 1


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of a framework's model
def test_torch_version():
  import torch  # noqa: PLC0415

  def loss(w, x, scale):
    return scale * jnp.sum(jnp.tanh(x @ w) ** 2)

  def torch_loss(w, x, scale):
    return scale * torch.sum(torch.tanh(x @ w) ** 2)

  class _Flipped(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value):
      return value.clone()

    @staticmethod
    def backward(ctx, g):
      return -g

  w = jnp.linspace(-1, 1, 32).reshape(8, 4)
  x = jnp.linspace(-1, 1, 16 * 8).reshape(16, 8)
  comparison = funcgrad.compare(loss, w, x, 0.5, peers={"torch": torch_loss}, **JIT)
  assert [r.engine for r in comparison.results] == ["jit", "torch_eager", "torch_compile"]
  _assert_ok(comparison, "jax float64 re-run")
  wrong = funcgrad.compare(loss, w, x, 0.5, engines=("jit", "torch_eager"), min_run_time=0.01,
                           peers={"torch": lambda *a: _Flipped.apply(torch_loss(*a))})
  assert _statuses(wrong) == {"jit": "ok", "torch_eager": "wrong"}


def test_bad_input_names_the_parameter():
  def loss(w, x):
    return jnp.sum(w * x)

  w, x = jnp.ones(3), jnp.ones(3)
  cases = [
      ({"kwargs": [("x", 1)]}, r"kwargs must be a dict"),
      ({"static_argnums": 4}, r"static_argnums=4 is out of range"),
      ({"static_argnums": 0}, r"static_argnums/static_argnames make argument 0 .* argnums"),
      ({"peers": {"torch": 3}}, r"peers\['torch'\] must be callable"),
      ({"peers": {"tensorflow": print}}, r"peers=\{'tensorflow': ...\} names an unknown"),
      ({"check": "x64"}, r"check='x64' is not a check"),
      ({"rtol": -1.0}, r"rtol=-1.0 must be a finite number"),
      ({"engines": "numpy"}, r"Invalid engines='numpy': it cannot run an arbitrary function"),
      ({"backend": "gpux"}, r"Invalid backend='gpux'"),
      ({"baseline": "torch_eager"}, r"Invalid baseline='torch_eager'"),
  ]
  for kwargs, message in cases:
    with pytest.raises(UsageError, match=message):
      funcgrad.compare(loss, w, x, **{**JIT, **kwargs})
  if "gpu" not in [d.platform for d in jax.devices()]:
    with pytest.raises(UsageError, match=r"backend='gpu' is not present here"):
      funcgrad.compare(loss, w, x, backend="gpu", **JIT)
  # A string is one engine.
  assert [r.engine for r in funcgrad.compare(loss, w, x, **JIT).results] == ["jit"]
