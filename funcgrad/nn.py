"""The model maths behind the `mlp`, `mlp_train` and `attention` workloads, in every framework.

Each model is written once per framework and checked against a hand-written NumPy backprop (the
float64 reference when given float64 inputs):

* an MLP 784-W-W-10 (ReLU, softmax cross-entropy against integer labels, mean over the batch);
* one Adam step on that MLP (optax's rule: `optax.adam`, written out for NumPy and TensorFlow);
* a causal multi-head self-attention layer (head dim 64) under a mean-squared-error loss.

Inputs come from `np.random.default_rng(seed)`, so every framework starts from the same numbers;
parameters are dicts of arrays with a fixed key order. Peer functions take the framework module
(`torch` or `tf`) as their first argument, so this module imports neither. Imports run one way:
`funcgrad.bench` -> `funcgrad.nn` -> jax. (JAX hands dicts back with their keys sorted.)
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad._types import DtypeSpec

Params = dict[str, Any]

MNIST_FEATURES = 784
CLASSES = 10
HEAD_DIM = 64
SCORE_SCALE = HEAD_DIM**-0.5  # a Python float (0.125), so it never widens the dtype
ADAM_DEFAULTS = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
# Adam per parameter: mu (3), nu (4), two bias corrections (2), sqrt, + eps, divide, * lr,
# subtract (5): counted so `mlp_train_flops` differs from `mlp_flops` by what the step adds.
ADAM_FLOPS_PER_PARAM = 14
MLP_SIZE_FORM = "BATCHxWIDTH, e.g. 128x512"
ATTENTION_SIZE_FORM = "SEQxDIM, e.g. 256x512; DIM must be a positive multiple of 64 (the head dim)"


# ---------------------------------------------------------------------------------------------
# Sizes


def _size_text(shape) -> str:
  return "x".join(str(d) for d in shape) if isinstance(shape, tuple | list) else str(shape)


def _two_positive_ints(shape) -> bool:
  return (isinstance(shape, tuple | list) and len(shape) == 2 and all(
      isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in shape))


def parse_mlp_size(shape: tuple[int, ...]) -> tuple[int, int]:
  """Returns `(batch, width)` from a size such as `(128, 512)`.

  Raises:
    ValueError: unless `shape` is exactly two positive ints.

  Examples:
    >>> parse_mlp_size((128, 512))
    (128, 512)
  """
  if not _two_positive_ints(shape):
    raise ValueError(f"mlp size '{_size_text(shape)}' must be {MLP_SIZE_FORM}")
  return int(shape[0]), int(shape[1])


def parse_attention_size(shape: tuple[int, ...]) -> tuple[int, int]:
  """Returns `(seq, dim)` from a size such as `(256, 512)`; heads = dim // 64.

  Raises:
    ValueError: unless `shape` is two positive ints with dim a multiple of 64.

  Examples:
    >>> parse_attention_size((256, 512))
    (256, 512)
  """
  if not _two_positive_ints(shape) or shape[1] % HEAD_DIM:
    raise ValueError(f"attention size '{_size_text(shape)}' must be {ATTENTION_SIZE_FORM}")
  return int(shape[0]), int(shape[1])


# ---------------------------------------------------------------------------------------------
# MLP 784-W-W-10


def mlp_inputs(batch: int, width: int, dtype: DtypeSpec,
               seed: int) -> tuple[Params, np.ndarray, np.ndarray]:
  """Returns `(params, x, labels)` for the MLP, drawn from `np.random.default_rng(seed)`.

  Weights are scaled normals: He (std sqrt(2 / fan_in)) for the two ReLU layers, Glorot
  (std sqrt(2 / (fan_in + fan_out))) for the output layer. Biases are N(0, 0.1^2): small but
  nonzero, so their gradients are exercised. `x` is standard normal; labels are int32 in [0, 10).

  Raises:
    ValueError: unless batch and width are positive ints.
  """
  batch, width = parse_mlp_size((batch, width))
  rng = np.random.default_rng(seed)
  dtype = np.dtype(dtype)
  shapes = {"w1": (MNIST_FEATURES, width), "b1": (width,), "w2": (width, width), "b2": (width,),
            "w3": (width, CLASSES), "b3": (CLASSES,)}
  stds = {"w1": np.sqrt(2 / MNIST_FEATURES), "w2": np.sqrt(2 / width),
          "w3": np.sqrt(2 / (width + CLASSES)), "b1": 0.1, "b2": 0.1, "b3": 0.1}
  params = {k: (stds[k] * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}
  x = rng.standard_normal((batch, MNIST_FEATURES)).astype(dtype)
  labels = rng.integers(0, CLASSES, batch, dtype=np.int32)
  return params, x, labels


def mlp_loss(params: Params, x: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of the MLP's logits against integer `labels` (pure, jittable)."""
  h1 = jax.nn.relu(x @ params["w1"] + params["b1"][None, :])
  h2 = jax.nn.relu(h1 @ params["w2"] + params["b2"][None, :])
  log_probs = jax.nn.log_softmax(h2 @ params["w3"] + params["b3"][None, :], axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def mlp_value_and_grads_numpy(params: Params, x: np.ndarray,
                              labels: np.ndarray) -> tuple[np.ndarray, Params]:
  """`mlp_loss` and its gradients w.r.t. `params` by hand-written NumPy backprop.

  Computes in the inputs' dtype: float64 inputs give the float64 reference. (bfloat16 inputs
  come back float32: NumPy's matmul on ml_dtypes' bfloat16 returns float32.)
  """
  z1 = x @ params["w1"] + params["b1"]
  h1 = np.maximum(z1, 0)
  z2 = h1 @ params["w2"] + params["b2"]
  h2 = np.maximum(z2, 0)
  logits = h2 @ params["w3"] + params["b3"]
  shifted = logits - logits.max(axis=-1, keepdims=True)  # stable: exp of values <= 0
  exp = np.exp(shifted)
  sum_exp = exp.sum(axis=-1, keepdims=True)
  rows = np.arange(len(labels))
  loss = np.mean(np.log(sum_exp[:, 0]) - shifted[rows, labels])
  # d loss / d logits = (softmax - onehot) / batch.
  d_logits = exp / sum_exp
  d_logits[rows, labels] -= 1
  d_logits /= len(labels)
  d_z2 = (d_logits @ params["w3"].T) * (z2 > 0)
  d_z1 = (d_z2 @ params["w2"].T) * (z1 > 0)
  grads = {"w1": x.T @ d_z1, "b1": d_z1.sum(0), "w2": h1.T @ d_z2, "b2": d_z2.sum(0),
           "w3": h2.T @ d_logits, "b3": d_logits.sum(0)}
  return loss, grads


def mlp_loss_torch(torch, params: Params, x, labels):
  """`mlp_loss` on torch tensors (dicts of tensors), for `loss.backward()`."""
  h1 = torch.relu(x @ params["w1"] + params["b1"])
  h2 = torch.relu(h1 @ params["w2"] + params["b2"])
  log_probs = torch.log_softmax(h2 @ params["w3"] + params["b3"], dim=-1)
  return -torch.mean(torch.gather(log_probs, 1, labels.long()[:, None]))


def mlp_loss_tf(tf, params: Params, x, labels):
  """`mlp_loss` on TensorFlow tensors or variables, for `tf.GradientTape`."""
  h1 = tf.nn.relu(x @ params["w1"] + params["b1"])
  h2 = tf.nn.relu(h1 @ params["w2"] + params["b2"])
  logits = h2 @ params["w3"] + params["b3"]
  return tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _mlp_param_count(width: int) -> int:
  return (MNIST_FEATURES + 1) * width + (width + 1) * width + (width + 1) * CLASSES


def mlp_flops(batch: int, width: int) -> int:
  """FLOPs of the MLP's value and gradients, matmuls only (2*m*n*k each).

  Forward: the three layer matmuls. Backward: each weight gradient (the same three again) and the
  activation gradients of layers 2 and 3 (the input's gradient is not needed). Elementwise work
  (biases, ReLU, softmax, the loss) is O(batch * width) against O(batch * width^2) and ignored.

  Raises:
    ValueError: unless batch and width are positive ints.

  Examples:
    >>> mlp_flops(1, 1)
    3202
  """
  batch, width = parse_mlp_size((batch, width))
  forward = MNIST_FEATURES * width + width * width + width * CLASSES
  backward = forward + width * width + width * CLASSES
  return 2 * batch * (forward + backward)


def mlp_min_bytes(batch: int, width: int, itemsize: int) -> int:
  """Bytes any implementation must move: params and inputs read once, gradients written once.

  Labels count as int32 (4 bytes each) whatever `itemsize` is.

  Raises:
    ValueError: unless batch and width are positive ints.
  """
  batch, width = parse_mlp_size((batch, width))
  params = _mlp_param_count(width)
  return itemsize * (2 * params + batch * MNIST_FEATURES) + 4 * batch


# ---------------------------------------------------------------------------------------------
# One Adam step on the MLP (mlp_train)


def adam_step_numpy(params: Params, grads: Params, mu: Params, nu: Params, t: int,
                    lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8) -> tuple[Params, Params, Params]:
  """One step of `optax.adam`'s rule in NumPy; `t` is this step's number, starting at 1.

  mu = (1-b1) g + b1 mu; nu = (1-b2) g^2 + b2 nu; params -= lr * mu_hat / (sqrt(nu_hat) + eps)
  with mu_hat = mu / (1 - b1^t), nu_hat = nu / (1 - b2^t).

  Returns:
    `(params, mu, nu)`, new dicts; the inputs are not modified.
  """
  new_params, new_mu, new_nu = {}, {}, {}
  for k, p in params.items():
    g = grads[k]
    new_mu[k] = (1 - b1) * g + b1 * mu[k]
    new_nu[k] = (1 - b2) * g * g + b2 * nu[k]
    mu_hat = new_mu[k] / np.asarray(1 - b1**t, p.dtype)
    nu_hat = new_nu[k] / np.asarray(1 - b2**t, p.dtype)
    new_params[k] = p - lr * mu_hat / (np.sqrt(nu_hat) + eps)
  return new_params, new_mu, new_nu


def make_mlp_train_step(
    optimizer: optax.GradientTransformation) -> Callable[..., tuple[Params, Any, jax.Array]]:
  """Returns `step(params, opt_state, x, labels) -> (params, opt_state, loss)`.

  Pure, so it can be `jax.jit(step, donate_argnums=(0, 1))`; `loss` is the loss before the step.
  """

  def step(params, opt_state, x, labels):
    loss, grads = jax.value_and_grad(mlp_loss)(params, x, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def mlp_train_step_numpy(params: Params, mu: Params, nu: Params, t: int, x: np.ndarray,
                         labels: np.ndarray,
                         lr: float = 1e-3) -> tuple[Params, Params, Params, np.ndarray]:
  """`mlp_value_and_grads_numpy` then `adam_step_numpy` (step number `t`, from 1).

  Returns:
    `(params, mu, nu, loss)`, with the loss before the step.
  """
  loss, grads = mlp_value_and_grads_numpy(params, x, labels)
  params, mu, nu = adam_step_numpy(params, grads, mu, nu, t, lr=lr)
  return params, mu, nu, loss


def make_mlp_train_step_torch(torch, params_tensors: Params, lr: float = 1e-3) -> Callable:
  """Returns `step(x, labels) -> loss`: one `torch.optim.Adam` step on `params_tensors`.

  The tensors (leaves; `requires_grad` is switched on) are updated in place. betas and eps are
  optax's defaults; torch adds eps after bias-correcting the second moment, as optax does.
  """
  for tensor in params_tensors.values():
    tensor.requires_grad_(True)
  optimizer = torch.optim.Adam(list(params_tensors.values()), lr=lr,
                               betas=(ADAM_DEFAULTS["b1"], ADAM_DEFAULTS["b2"]),
                               eps=ADAM_DEFAULTS["eps"])

  def step(x, labels):
    optimizer.zero_grad()
    loss = mlp_loss_torch(torch, params_tensors, x, labels)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step


def make_mlp_train_step_tf(tf, variables_dict: Params, lr: float = 1e-3) -> Callable:
  """Returns `step(x, labels) -> loss`: one Adam step on the `tf.Variable`s in `variables_dict`.

  Adam is written out here (optax's rule, as in `adam_step_numpy`, so the check against optax is
  exact up to float32 rounding) rather than taken from `tf.keras.optimizers.Adam`. Keras folds
  the bias corrections into the learning rate and adds eps to the uncorrected sqrt(nu), which is
  optax's rule with eps / sqrt(1 - b2^t) in place of eps (31.6 eps at the first step). Measured at
  mlp 8x32 (tests/test_nn.py keeps the measurement): after one step Keras's parameters are up to
  0.18 lr away from the float64 reference, on entries whose gradient is ~1e-6, where this
  function, torch and optax in float32 are within ~6e-5 lr of it. The state (mu, nu, the step
  count) lives in variables, so the step may be wrapped in `tf.function`.
  """
  b1, b2, eps = ADAM_DEFAULTS["b1"], ADAM_DEFAULTS["b2"], ADAM_DEFAULTS["eps"]
  mu = {k: tf.Variable(tf.zeros_like(v)) for k, v in variables_dict.items()}
  nu = {k: tf.Variable(tf.zeros_like(v)) for k, v in variables_dict.items()}
  count = tf.Variable(0, dtype=tf.int32)

  def step(x, labels):
    with tf.GradientTape() as tape:
      loss = mlp_loss_tf(tf, variables_dict, x, labels)
    grads = tape.gradient(loss, variables_dict)
    count.assign_add(1)
    t = tf.cast(count, tf.float64)
    for k, var in variables_dict.items():
      mu[k].assign((1 - b1) * grads[k] + b1 * mu[k])
      nu[k].assign((1 - b2) * tf.square(grads[k]) + b2 * nu[k])
      mu_hat = mu[k] / tf.cast(1 - b1**t, var.dtype)
      nu_hat = nu[k] / tf.cast(1 - b2**t, var.dtype)
      var.assign_sub(lr * mu_hat / (tf.sqrt(nu_hat) + eps))
    return loss

  return step


def mlp_train_flops(batch: int, width: int) -> int:
  """`mlp_flops` plus Adam's elementwise update, `ADAM_FLOPS_PER_PARAM` per parameter.

  Raises:
    ValueError: unless batch and width are positive ints.

  Examples:
    >>> mlp_train_flops(1, 1) - mlp_flops(1, 1) == ADAM_FLOPS_PER_PARAM * (785 + 2 + 20)
    True
  """
  return mlp_flops(batch, width) + ADAM_FLOPS_PER_PARAM * _mlp_param_count(width)


def mlp_train_min_bytes(batch: int, width: int, itemsize: int) -> int:
  """Params, mu and nu read and written once each; inputs read once (labels as int32).

  Raises:
    ValueError: unless batch and width are positive ints.
  """
  batch, width = parse_mlp_size((batch, width))
  return itemsize * (6 * _mlp_param_count(width) + batch * MNIST_FEATURES) + 4 * batch


# ---------------------------------------------------------------------------------------------
# Causal multi-head self-attention (attention)


def attention_inputs(seq: int, dim: int, dtype: DtypeSpec,
                     seed: int) -> tuple[Params, np.ndarray, np.ndarray]:
  """Returns `(params, x, target)`: weights N(0, 1/dim), `x` and `target` (seq, dim) N(0, 1).

  Raises:
    ValueError: unless dim is a positive multiple of 64 (the head dim) and seq positive.
  """
  seq, dim = parse_attention_size((seq, dim))
  rng = np.random.default_rng(seed)
  dtype = np.dtype(dtype)
  scale = 1 / np.sqrt(dim)
  params = {"wqkv": (scale * rng.standard_normal((dim, 3 * dim))).astype(dtype),
            "wo": (scale * rng.standard_normal((dim, dim))).astype(dtype)}
  x = rng.standard_normal((seq, dim)).astype(dtype)
  target = rng.standard_normal((seq, dim)).astype(dtype)
  return params, x, target


def _split_heads(a, dim):
  """(seq, dim) -> (heads, seq, 64), for NumPy and jax arrays."""
  return a.reshape(a.shape[0], dim // HEAD_DIM, HEAD_DIM).transpose(1, 0, 2)


def _merge_heads(a):
  """(heads, seq, 64) -> (seq, heads * 64)."""
  return a.transpose(1, 0, 2).reshape(a.shape[1], a.shape[0] * a.shape[2])


def attention_output(params: Params, x: jax.Array) -> jax.Array:
  """The layer's output (seq, dim): causal softmax(q k^T / 8) v per head, then `wo`."""
  dim = x.shape[1]
  q, k, v = (_split_heads(a, dim) for a in jnp.split(x @ params["wqkv"], 3, axis=1))
  scores = q @ k.transpose(0, 2, 1) * SCORE_SCALE
  causal = jnp.tril(jnp.ones((x.shape[0], x.shape[0]), bool))
  # The diagonal is always allowed, so every row has a finite max and -inf is safe.
  probs = jax.nn.softmax(jnp.where(causal[None], scores, -jnp.inf), axis=-1)
  return _merge_heads(probs @ v) @ params["wo"]


def attention_loss(params: Params, x: jax.Array, target: jax.Array) -> jax.Array:
  """mean((attention_output(params, x) - target)^2), differentiated w.r.t. params."""
  return jnp.mean(jnp.square(attention_output(params, x) - target))


def _causal_softmax_numpy(scores):
  seq = scores.shape[-1]
  masked = np.where(np.tril(np.ones((seq, seq), bool)), scores, -np.inf)
  exp = np.exp(masked - masked.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def attention_value_and_grads_numpy(params: Params, x: np.ndarray,
                                    target: np.ndarray) -> tuple[np.ndarray, Params]:
  """`attention_loss` and its gradients w.r.t. `params` by hand-written NumPy backprop.

  Computes in the inputs' dtype: float64 inputs give the float64 reference. (bfloat16 inputs
  come back float32: NumPy's matmul on ml_dtypes' bfloat16 returns float32.)
  """
  seq, dim = x.shape
  q, k, v = (_split_heads(a, dim) for a in np.split(x @ params["wqkv"], 3, axis=1))
  probs = _causal_softmax_numpy(q @ k.transpose(0, 2, 1) * SCORE_SCALE)
  heads = _merge_heads(probs @ v)
  residual = heads @ params["wo"] - target
  loss = np.mean(residual * residual)
  d_out = 2 * residual / residual.size
  d_heads = _split_heads(d_out @ params["wo"].T, dim)
  d_probs = d_heads @ v.transpose(0, 2, 1)
  d_v = probs.transpose(0, 2, 1) @ d_heads
  # Softmax backward; masked entries have probs = 0, so their score gradient is 0.
  d_scores = probs * (d_probs - np.sum(d_probs * probs, axis=-1, keepdims=True)) * SCORE_SCALE
  d_q = d_scores @ k
  d_k = d_scores.transpose(0, 2, 1) @ q
  d_qkv = np.concatenate([_merge_heads(d) for d in (d_q, d_k, d_v)], axis=1)
  return loss, {"wqkv": x.T @ d_qkv, "wo": heads.T @ d_out}


def attention_loss_torch(torch, params: Params, x, target):
  """`attention_loss` on torch tensors, the same maths written out (not the fused SDPA kernel)."""
  seq, dim = x.shape
  q, k, v = ((a.reshape(seq, dim // HEAD_DIM, HEAD_DIM).permute(1, 0, 2))
             for a in torch.split(x @ params["wqkv"], dim, dim=1))
  scores = q @ k.transpose(1, 2) * SCORE_SCALE
  causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool, device=x.device))
  probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
  heads = (probs @ v).permute(1, 0, 2).reshape(seq, dim)
  return torch.mean(torch.square(heads @ params["wo"] - target))


def attention_loss_tf(tf, params: Params, x, target):
  """`attention_loss` on TensorFlow tensors or variables, for `tf.GradientTape`."""
  seq, dim = x.shape
  q, k, v = (tf.transpose(tf.reshape(a, (seq, dim // HEAD_DIM, HEAD_DIM)), (1, 0, 2))
             for a in tf.split(x @ params["wqkv"], 3, axis=1))
  scores = tf.matmul(q, k, transpose_b=True) * SCORE_SCALE
  causal = tf.linalg.band_part(tf.ones((seq, seq), tf.bool), -1, 0)  # lower triangle
  probs = tf.nn.softmax(tf.where(causal[None], scores, float("-inf")), axis=-1)
  heads = tf.reshape(tf.transpose(probs @ v, (1, 0, 2)), (seq, dim))
  return tf.reduce_mean(tf.square(heads @ params["wo"] - target))


def attention_flops(seq: int, dim: int) -> int:
  """FLOPs of the layer's value and gradients, matmuls only (2*m*n*k each).

  Forward: QKV projection 6 S D^2, scores and weighted sum 2 S^2 D each, output projection
  2 S D^2. Backward: both gradients of every matmul except the input's gradient of the QKV
  projection. The causal mask halves no work here: all S^2 scores are computed. Softmax, scaling
  and the loss are elementwise, O(S^2 heads + S D), and ignored.

  Raises:
    ValueError: unless dim is a positive multiple of 64.

  Examples:
    >>> attention_flops(1, 64) == 18 * 64**2 + 12 * 64
    True
  """
  seq, dim = parse_attention_size((seq, dim))
  forward = 8 * seq * dim * dim + 4 * seq * seq * dim
  backward = 10 * seq * dim * dim + 8 * seq * seq * dim
  return forward + backward


def attention_min_bytes(seq: int, dim: int, itemsize: int) -> int:
  """Params, `x` and `target` read once, gradients written once.

  Raises:
    ValueError: unless dim is a positive multiple of 64.
  """
  seq, dim = parse_attention_size((seq, dim))
  return itemsize * (2 * 4 * dim * dim + 2 * seq * dim)
