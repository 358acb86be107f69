"""A user's arguments split as equinox.filter_jit would, with real Flax, Equinox and Haiku models;
captions; the torch adapter."""

import functools
import sys

import equinox as eqx
import flax.linen as linen
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from funcgrad.bench import user_args, user_torch
from funcgrad.errors import UsageError
from tests.helpers import quick_first


def _grads(split, jit):
  program = split.program()
  return (jax.jit(program) if jit else program)(*split.inputs())


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.linear = nnx.Linear(3, 4, rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.drop(self.bn(self.linear(x)))


# The eager runs of a framework's model take seconds (`slow`); the quick subset runs them jitted.
@pytest.mark.parametrize("jit", quick_first(True, False))
def test_nnx_module_only_params_are_differentiated(jit):
  model = _Net(nnx.Rngs(0))
  x = jnp.linspace(-1, 1, 15).reshape(5, 3)

  def loss(model, x):
    return jnp.sum(model(x) ** 2)

  split = user_args.split_call(loss, (model, x))
  # kernel, bias, scale, bias; not BatchNorm's mean/var nor Dropout's uint32 count and key.
  assert sorted(d.shape for d in split.diff) == [(3, 4), (4,), (4,), (4,)]
  assert {str(r.dtype) for r in split.rest} == {"float32", "uint32", "key<fry>"}
  (value, grads) = _grads(split, jit)
  # nnx.value_and_grad is the reference: the same Params, the same Rngs state (under nnx.jit:
  # NNX's own compiled path, a second's less than op by op).
  want_value, want_grads = nnx.jit(nnx.value_and_grad(loss))(_Net(nnx.Rngs(0)), x)
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  want = jax.tree.leaves(want_grads)
  largest = max(float(np.max(np.abs(w))) for w in want)  # the linear bias's is 0 but rounding
  for got, w in zip(grads, want, strict=True):  # the same order
    np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-4 * largest)


@pytest.mark.parametrize("jit", quick_first(True, False))
def test_equinox_module_with_function_leaves_and_keyword_arguments(jit):
  mlp = eqx.nn.MLP(4, 1, 8, 2, key=jax.random.key(0))
  x = jnp.linspace(-1, 1, 12).reshape(3, 4)

  def loss(model, x, scale=1.0, activation=jax.nn.relu):
    return scale * jnp.sum(activation(jax.vmap(model)(x)))

  split = user_args.split_call(loss, (mlp, x), {"scale": 2.0, "activation": jnp.tanh})
  assert split.n_static >= 4  # two activations in the MLP, scale, the activation argument
  value, grads = _grads(split, jit)
  want_value, want_grads = eqx.filter_jit(eqx.filter_value_and_grad(
      lambda m: loss(m, x, scale=2.0, activation=jnp.tanh)))(mlp)
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  for got, want in zip(grads, jax.tree.leaves(eqx.filter(want_grads, eqx.is_array)), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: seconds of two frameworks' models
def test_linen_and_haiku_params_with_an_rng_and_integer_labels():
  model = linen.Dense(3)
  x = jnp.ones((4, 2))
  params = model.init(jax.random.key(0), x)
  labels = jnp.array([0, 1, 2, 1])

  def linen_loss(params, x, labels):
    logits = model.apply(params, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

  split = user_args.split_call(linen_loss, (params, x, labels), argnums=(0, 2))
  assert [d.shape for d in split.diff] == [(3,), (2, 3)]  # labels are int32: not differentiated
  assert [str(r.dtype) for r in split.rest] == ["float32", "int32"]

  with jax.numpy_rank_promotion("allow"):  # haiku's bias add broadcasts by rank
    net = hk.transform(lambda x: hk.dropout(hk.next_rng_key(), 0.5, hk.Linear(3)(x)))
    hk_params = net.init(jax.random.PRNGKey(0), x)

    def hk_loss(params, key, x):
      return jnp.sum(net.apply(params, key, x) ** 2)

    split = user_args.split_call(hk_loss, (hk_params, jax.random.PRNGKey(1), x))
    value, grads = _grads(split, jit=True)
    hk_reference = jax.jit(jax.value_and_grad(hk_loss))
    want_value, want_grads = hk_reference(hk_params, jax.random.PRNGKey(1), x)
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  for got, want in zip(grads, jax.tree.leaves(want_grads), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert [str(r.dtype) for r in split.rest] == ["uint32", "float32"]  # the legacy key, x


def test_static_argnums_argnames_and_has_aux():
  def loss(w, depth, mode, x):
    y = x
    for _ in range(depth):  # a Python loop on a static int: fails if depth were traced
      y = jnp.tanh(y @ w)
    return jnp.sum(y**2) if mode == "sum" else jnp.mean(y**2), {"depth": depth, "y": y}

  w, x = jnp.eye(2) * 0.5, jnp.ones((3, 2))
  split = user_args.split_call(loss, (w, 3, "sum", x), static_argnums=(1,),
                               static_argnames=("mode",), has_aux=True)
  (value, aux), (g,) = _grads(split, jit=True)
  (want_value, _), want_g = jax.value_and_grad(lambda w: loss(w, 3, "sum", x), has_aux=True)(w)
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  np.testing.assert_allclose(g, want_g, rtol=1e-5)
  assert aux["depth"] == 3 and aux["y"].shape == (3, 2)


def test_plain_arrays_do_not_import_flax(monkeypatch):
  # An NNX module exists only once flax.nnx is imported: a function of plain arrays (or of
  # another framework's modules) is split without importing Flax (a third of a second).
  for name in [m for m in sys.modules if m == "flax" or m.startswith("flax.")]:
    monkeypatch.delitem(sys.modules, name)
  split = user_args.split_call(lambda w, x: jnp.sum(w * x), (jnp.ones(3), jnp.ones(3)))
  assert [d.shape for d in split.diff] == [(3,)] and "flax.nnx" not in sys.modules


def test_typed_keys_are_traced_as_keys_never_through_numpy():
  def noisy(x, key):
    return jnp.sum(x * jax.random.normal(key, x.shape))

  key = jax.random.key(3)
  split = user_args.split_call(noisy, (jnp.ones(4), key))
  assert split.rest[0].dtype == key.dtype
  value, (g,) = _grads(split, jit=True)
  np.testing.assert_allclose(g, jax.random.normal(key, (4,)), rtol=1e-6)


def test_bad_arguments_name_the_parameter():
  def f(x, y):
    return jnp.sum(x * y)

  with pytest.raises(UsageError, match=r"kwargs must be a dict .* not a list"):
    user_args.split_call(f, (jnp.ones(2),), kwargs=[1])
  with pytest.raises(UsageError, match=r"static_argnums=5 is out of range .* 2 positional"):
    user_args.split_call(f, (jnp.ones(2), jnp.ones(2)), static_argnums=5)
  with pytest.raises(UsageError, match=r"make argument 0 of fn static, but argnums=\(0,\)"):
    user_args.split_call(f, (jnp.ones(2), jnp.ones(2)), static_argnums=0)
  with pytest.raises(UsageError, match=r"static_argnames='z' names no argument"):
    user_args.split_call(f, (jnp.ones(2), jnp.ones(2)), static_argnames="z")
  with pytest.raises(UsageError, match=r"argnums=\(0,\) of fn holds no floating-point array"):
    user_args.split_call(f, (jnp.arange(2), jnp.ones(2)))
  with pytest.raises(UsageError, match=r"argnums=2 is out of range"):
    user_args.split_call(f, (jnp.ones(2), jnp.ones(2)), argnums=2)
  # value_and_grad=False does not look at argnums.
  assert user_args.split_call(f, (jnp.arange(2), jnp.ones(2)), argnums=7,
                              value_and_grad=False).argnums == ()


def test_captions_name_the_function_and_its_arguments_compactly():
  mlp = eqx.nn.MLP(64, 10, 128, 2, key=jax.random.key(0))  # 64*128+128 + 128*128+128 + 1290

  def loss(model, x, key, training=True):
    del key, training
    return jnp.sum(jax.vmap(model)(x))

  x = jnp.ones((32, 64))
  assert user_args.caption(loss, (mlp, x, jax.random.key(0)), {"training": False}) == \
      "loss(MLP 26.1k params, x 32x64, key, training=False)"
  bound = functools.partial(loss, mlp, np.ones((1000, 64)))
  assert user_args.caption(bound, (jax.random.key(0),)) == "loss(key)"
  assert user_args.caption(jax.jit(loss), (mlp, x.astype(jnp.bfloat16), jax.random.key(0))) == \
      "loss(MLP 26.1k params, x 32x64 bf16, key)"


def test_check_peers_names_the_parameter():
  assert user_torch.check_peers({"torch": print}) == {"torch": print}
  with pytest.raises(UsageError, match=r"peers=\{'jax': ...\} names an unknown framework"):
    user_torch.check_peers({"jax": print})
  with pytest.raises(UsageError, match=r"peers\['torch'\] must be callable .* not a int"):
    user_torch.check_peers({"torch": 3})
  with pytest.raises(UsageError, match=r"peers must be a dict"):
    user_torch.check_peers([print])


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])  # compile
def test_torch_version_gets_the_same_arguments_and_gives_the_same_outputs(compiled):
  import torch  # noqa: PLC0415

  mlp = eqx.nn.MLP(3, 1, 4, 1, activation=jnp.tanh, key=jax.random.key(0))
  x = jnp.linspace(-1, 1, 6).reshape(2, 3)

  def loss(model, x, scale):
    return scale * jnp.sum(jax.vmap(model)(x) ** 2)

  def torch_loss(model, x, scale):
    hidden = torch.tanh(x @ model.layers[0].weight.T + model.layers[0].bias)
    return scale * torch.sum((hidden @ model.layers[1].weight.T + model.layers[1].bias) ** 2)

  split = user_args.split_call(loss, (mlp, x, 0.5))
  value, grads = split.program()(*split.inputs())
  peer = user_torch.torch_call(split, torch_loss, compiled=compiled)
  got_value, got_grads = peer.sync(peer.call())
  np.testing.assert_allclose(got_value.detach().numpy(), value, rtol=1e-5)
  for got, want in zip(got_grads, grads, strict=True):
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
