"""A training step of an Equinox MLP with dropout, and the same step in PyTorch.

  python -m experiments.compare --function=examples.dropout_step:train_step \
      --inputs=examples.dropout_step:example_inputs --value_and_grad=false \
      --peer_function=torch:examples.dropout_step:torch_train_step

One call is one SGD step: the loss of a batch (cross-entropy over integer labels, dropout drawn
from the key), its gradients and the update; it returns the updated parameters and the loss.
The torch version takes the same arguments as torch tensors (the model as the same Equinox
module holding tensors) and draws its own dropout masks, so its rows are not checked against
JAX's (the table says so); the JAX rows are checked jit against eager with the same key.
"""

import equinox as eqx
import jax
import optax

SIZES = (256, 512, 512, 10)  # input, two hidden layers, classes
BATCH = 128
DROPOUT = 0.1
LEARNING_RATE = 0.05


class Net(eqx.Module):
  """An MLP with ReLU and dropout after each hidden layer."""

  layers: list[eqx.nn.Linear]
  dropout: eqx.nn.Dropout

  def __init__(self, sizes, p, key):
    keys = jax.random.split(key, len(sizes) - 1)
    self.layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in
                   zip(sizes[:-1], sizes[1:], keys, strict=True)]
    self.dropout = eqx.nn.Dropout(p)

  def __call__(self, x, key):
    for layer in self.layers[:-1]:
      key, sub = jax.random.split(key)
      x = self.dropout(jax.nn.relu(jax.vmap(layer)(x)), key=sub)
    return jax.vmap(self.layers[-1])(x)


def loss(model, x, labels, key):
  return optax.softmax_cross_entropy_with_integer_labels(model(x, key), labels).mean()


def train_step(model, x, labels, key):
  """One SGD step: the updated parameters (array leaves) and the batch's loss."""
  value, grads = eqx.filter_value_and_grad(loss)(model, x, labels, key)
  model = eqx.apply_updates(model, jax.tree.map(lambda g: -LEARNING_RATE * g, grads))
  return eqx.filter(model, eqx.is_array), value


def example_inputs():
  """The arguments of `train_step`: the model, a batch, integer labels and a typed key."""
  model_key, x_key, label_key = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(x_key, (BATCH, SIZES[0]))
  labels = jax.random.randint(label_key, (BATCH,), 0, SIZES[-1])
  return Net(SIZES, DROPOUT, model_key), x, labels, jax.random.key(1)


def torch_train_step(model, x, labels, key):
  """`train_step` in PyTorch: the same layers (as tensors), its own dropout masks."""
  import torch  # noqa: PLC0415 - the peer is optional
  import torch.nn.functional as F  # noqa: N812, PLC0415

  del key  # torch draws its own dropout masks
  params = [t.detach().requires_grad_(True) for layer in model.layers
            for t in (layer.weight, layer.bias)]
  h = x
  for i in range(len(model.layers)):
    h = h @ params[2 * i].T + params[2 * i + 1]
    if i < len(model.layers) - 1:
      h = F.dropout(torch.relu(h), DROPOUT, training=True)
  value = F.cross_entropy(h, labels.long())
  grads = torch.autograd.grad(value, params)
  updated = [(p - LEARNING_RATE * g).detach() for p, g in zip(params, grads, strict=True)]
  return updated, value.detach()
