"""The models people train, as workloads: an MLP (value + grads, and one Adam step) and a causal
self-attention layer, from `funcgrad.nn`, with NumPy, PyTorch and TensorFlow peers."""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from funcgrad import nn
from funcgrad.bench.workloads.model import (
  REFERENCE_NUMPY,
  Reference,
  Workload,
  cast_floats,
  flat_outputs,
  max_scales,
  numpy_program,
)
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape

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
  return cast_floats(tree, np.float64)


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
      peers={"numpy": numpy_program(numpy_grads), "torch": torch_loss, "tf": tf_loss},
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
