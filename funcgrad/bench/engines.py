"""One engine per way of computing value + gradients; adding a peer is adding one entry.

Each engine's `prepare(workload, inputs, device)` places the inputs, does whatever the engine does
once (tracing, lowering, compiling — timed separately where the engine exposes the stages), runs
the first call, and returns a `Prepared`: a zero-argument `call` for the timer, the `sync` that
waits for its outputs, and `to_numpy` for the cross-check. Peers (torch, TensorFlow) are imported
only when asked for; a missing one raises `peers.PeerUnavailableError` naming the extra.
"""

import dataclasses
import functools
import time
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from funcgrad import sharding
from funcgrad.bench.timing import Sync, time_once
from funcgrad.bench.workloads import Outputs, Workload
from funcgrad.compile_cache import persistent_cache_disabled
from funcgrad.peers import import_peer, peer_available


@dataclasses.dataclass
class Prepared:
  """An engine ready to time.

  Attributes:
    call: one value + gradients on already-placed inputs.
    sync: waits until `call`'s outputs are computed.
    to_numpy: flattens `call`'s outputs to NumPy `(value, *grads)`.
    first_output: the output of the first call (checked before anything is timed).
    device: where the engine ran ('cpu:0', 'cuda:0', 'host').
    device_kind: that device's kind ('cpu', 'NVIDIA H100 80GB HBM3').
    stages: seconds for the stages that apply: trace_s, lower_s, compile_s, first_call_s.
    measure_dispatch: whether a dispatch-only time (no sync per call) means something here.
    n_devices: how many devices the inputs were spread over.
    sharding: how they were spread (None on a single device).
  """

  call: Callable[[], Any]
  sync: Sync
  to_numpy: Callable[[Any], Outputs]
  first_output: Any
  device: str
  device_kind: str
  stages: dict[str, float]
  measure_dispatch: bool = False
  n_devices: int = 1
  sharding: str | None = None


@dataclasses.dataclass(frozen=True)
class Engine:
  """A named way to compute value + gradients.

  Attributes:
    name: the flag value.
    description: one line for --help and the README.
    requires: the module a peer needs (None for numpy and JAX engines).
    prepare: `prepare(workload, inputs, device) -> Prepared`; a shardable engine's also takes
      `mesh=` and then spreads its inputs over that mesh of devices.
    shardable: whether `prepare` accepts a mesh.
  """

  name: str
  description: str
  requires: str | None
  prepare: Callable[..., Prepared]
  shardable: bool = False

  def available(self) -> bool:
    """Whether this engine's framework can be imported here."""
    return self.requires is None or peer_available(self.requires)


def _identity(out: Any) -> Any:
  return out


def _flat_jax(out: Any) -> Outputs:
  return tuple(np.asarray(leaf) for leaf in jax.tree.leaves(out))


def _jax_kind(device: jax.Device) -> tuple[str, str]:
  label = f"{'cuda' if device.platform == 'gpu' else device.platform}:{device.id}"
  return label, device.device_kind


# ---------------------------------------------------------------------------------------- NumPy


def _prepare_numpy(workload: Workload, inputs: tuple[np.ndarray, ...],
                   device: jax.Device) -> Prepared:
  del device  # NumPy runs on the host whatever the backend.
  call = functools.partial(workload.flat_numpy, *inputs)
  out, first = time_once(call, _identity)
  return Prepared(call, _identity, _identity, out, "host", "cpu", {"first_call_s": first})


# ------------------------------------------------------------------------------------------ JAX


def _place(inputs: tuple[np.ndarray, ...], device: jax.Device,
           mesh: Mesh | None) -> tuple[list[jax.Array], dict[str, Any]]:
  """Inputs on one device, or spread over `mesh`; and what to record about where they went."""
  if mesh is None:
    return [jax.device_put(a, device) for a in inputs], {}
  args = [sharding.shard(a, mesh) for a in inputs]
  return args, {"n_devices": mesh.size, "sharding": sharding.describe(args[0])}


def _prepare_eager(workload: Workload, inputs: tuple[np.ndarray, ...],
                   device: jax.Device, mesh: Mesh | None = None) -> Prepared:
  args, placement = _place(inputs, device, mesh)
  fn = workload.jax_value_and_grads()
  jax.clear_caches()  # the first call pays for compiling each primitive, as a fresh process would
  call = functools.partial(fn, *args)
  out, first = time_once(call)
  return Prepared(call, jax.block_until_ready, _flat_jax, out, *_jax_kind(device),
                  {"first_call_s": first}, **placement)


def _packed(fn: Callable[..., Any]) -> Callable[..., jax.Array]:
  """`fn`'s outputs raveled into one flat array: one output buffer instead of one per leaf."""
  def packed(*args):
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(fn(*args))])

  return packed


def _unpacker(workload: Workload, shape: tuple[int, ...]) -> Callable[[Any], Outputs]:
  """Splits a packed `(value, *grads)` array back into the value and the gradient arrays."""
  size = int(np.prod(shape))

  def unpack(flat: Any) -> Outputs:
    flat = np.asarray(flat)
    grads = [flat[1 + i * size:1 + (i + 1) * size].reshape(shape)
             for i in range(len(workload.argnums))]
    return (flat[0], *grads)

  return unpack


def _prepare_jit(workload: Workload, inputs: tuple[np.ndarray, ...], device: jax.Device,
                 packed: bool = False, mesh: Mesh | None = None) -> Prepared:
  args, placement = _place(inputs, device, mesh)
  fn = workload.jax_value_and_grads()
  jitted = jax.jit(_packed(fn) if packed else fn)
  jax.clear_caches()
  call = functools.partial(jitted, *args)
  # First the user's first call: trace, lower, compile (or load from a persistent cache), run.
  out, first = time_once(call)
  # Then the stages of compiling from scratch, through the AOT API, with the persistent cache
  # (if any) switched off so that a warm cache does not hide the compile.
  jax.clear_caches()
  with persistent_cache_disabled():
    start = time.perf_counter()
    traced = jitted.trace(*args)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()
    compiled_at = time.perf_counter()
  stages = {"trace_s": traced_at - start, "lower_s": lowered_at - traced_at,
            "compile_s": compiled_at - lowered_at, "first_call_s": first}
  to_numpy = _unpacker(workload, inputs[0].shape) if packed else _flat_jax
  return Prepared(call, jax.block_until_ready, to_numpy, out, *_jax_kind(device), stages,
                  measure_dispatch=True, **placement)


# ---------------------------------------------------------------------------------------- torch


def _torch_setup(workload: Workload, inputs: tuple[np.ndarray, ...], device: jax.Device):
  torch = import_peer("torch")
  on_gpu = device.platform == "gpu" and torch.cuda.is_available()
  where = "cuda" if on_gpu else "cpu"
  dtype = getattr(torch, np.dtype(inputs[0].dtype).name)
  tensors = [torch.from_numpy(np.asarray(a, np.float32)).to(where, dtype) for a in inputs]
  for i in workload.argnums:
    tensors[i].requires_grad_(True)
  sync = (lambda out: (torch.cuda.synchronize(), out)[1]) if on_gpu else _identity
  kind = torch.cuda.get_device_name() if on_gpu else "cpu"
  return torch, tensors, sync, (f"{where}:0", kind)


def _torch_to_numpy(out: Any) -> Outputs:
  return tuple(t.detach().float().cpu().numpy() for t in out)


def _torch_value_and_grads(torch, loss, workload, tensors):
  value = loss(*tensors)
  grads = torch.autograd.grad(value, [tensors[i] for i in workload.argnums])
  return (value, *grads)


def _prepare_torch_eager(workload: Workload, inputs: tuple[np.ndarray, ...],
                         device: jax.Device) -> Prepared:
  torch, tensors, sync, where = _torch_setup(workload, inputs, device)
  loss = functools.partial(workload.loss, torch)
  call = functools.partial(_torch_value_and_grads, torch, loss, workload, tensors)
  out, first = time_once(call, sync)
  return Prepared(call, sync, _torch_to_numpy, out, *where, {"first_call_s": first})


def _prepare_torch_compile(workload: Workload, inputs: tuple[np.ndarray, ...],
                           device: jax.Device) -> Prepared:
  torch, tensors, sync, where = _torch_setup(workload, inputs, device)
  torch._dynamo.reset()  # cold: the first call compiles forward and backward with Inductor
  loss = torch.compile(functools.partial(workload.loss, torch), dynamic=False)
  call = functools.partial(_torch_value_and_grads, torch, loss, workload, tensors)
  out, first = time_once(call, sync)
  return Prepared(call, sync, _torch_to_numpy, out, *where, {"first_call_s": first})


# ----------------------------------------------------------------------------------- TensorFlow


def _tf_prepare(workload: Workload, inputs: tuple[np.ndarray, ...], device: jax.Device,
                wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Prepared:
  tf = import_peer("tensorflow")
  on_gpu = device.platform == "gpu" and bool(tf.config.list_physical_devices("GPU"))
  where = "/GPU:0" if on_gpu else "/CPU:0"
  ops = types.SimpleNamespace(sum=tf.reduce_sum, abs=tf.abs)

  def value_and_grads(*tensors):
    with tf.GradientTape() as tape:
      for i in workload.argnums:
        tape.watch(tensors[i])
      value = workload.loss(ops, *tensors)
    return (value, *tape.gradient(value, [tensors[i] for i in workload.argnums]))

  with tf.device(where):
    tensors = [tf.constant(a) for a in inputs]
    fn = wrap(value_and_grads)

    def call():
      with tf.device(where):
        return fn(*tensors)

  # TF's CPU kernels finish before returning; .numpy() in the cross-check copies to the host.
  out, first = time_once(call, _identity)
  return Prepared(call, _identity, lambda out: tuple(t.numpy() for t in out), out,
                  f"{'cuda' if on_gpu else 'cpu'}:0", "gpu" if on_gpu else "cpu",
                  {"first_call_s": first})


def _prepare_tf_eager(workload, inputs, device) -> Prepared:
  return _tf_prepare(workload, inputs, device, lambda f: f)


def _prepare_tf_function(workload, inputs, device) -> Prepared:
  tf = import_peer("tensorflow")
  return _tf_prepare(workload, inputs, device, tf.function)


def _prepare_tf_xla(workload, inputs, device) -> Prepared:
  tf = import_peer("tensorflow")
  return _tf_prepare(workload, inputs, device, functools.partial(tf.function, jit_compile=True))


ENGINES = {
    e.name: e
    for e in (
        Engine("numpy", "hand-written NumPy forward + backward", None, _prepare_numpy),
        Engine("eager", "JAX without jit: jax.value_and_grad, op by op", None, _prepare_eager,
               shardable=True),
        Engine("jit", "jax.jit(jax.value_and_grad(...)): traced once, compiled by XLA", None,
               _prepare_jit, shardable=True),
        Engine("jit_packed", "jax.jit, the value and gradients returned packed in one array",
               None, functools.partial(_prepare_jit, packed=True), shardable=True),
        Engine("torch_eager", "PyTorch autograd, eager", "torch", _prepare_torch_eager),
        Engine("torch_compile", "PyTorch torch.compile (Inductor) + autograd", "torch",
               _prepare_torch_compile),
        Engine("tf_eager", "TensorFlow GradientTape, eager", "tensorflow", _prepare_tf_eager),
        Engine("tf_function", "TensorFlow tf.function (graph)", "tensorflow",
               _prepare_tf_function),
        Engine("tf_xla", "TensorFlow tf.function(jit_compile=True) (XLA)", "tensorflow",
               _prepare_tf_xla),
    )
}


def get_engine(name: str) -> Engine:
  """Looks up an engine by name.

  Raises:
    ValueError: naming the valid engines.
  """
  if name not in ENGINES:
    raise ValueError(f"Unknown engine {name!r}. Valid: {', '.join(ENGINES)}.")
  return ENGINES[name]
