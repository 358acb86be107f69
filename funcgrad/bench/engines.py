"""One engine per way of running a workload; adding a peer is adding one entry.

Each engine's `prepare(workload, inputs, device, mesh=None)` places the inputs, does whatever the
engine does once (tracing, lowering, compiling), runs the first call (timed, and for the jit
engines split into trace / lower / compile by JAX's own events during that very call), and
returns a `Prepared`: a zero-argument `call` for the timer, the `sync` that waits for its
outputs, and `to_numpy` for the check. An engine that a workload does not implement raises
`NotImplementedForWorkload` (the row says so; the sweep goes on). Peers are imported only when
asked for; a missing one raises `peers.PeerUnavailableError` naming the extra.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from funcgrad import _compat, compile_cache, sharding
from funcgrad.bench.timing import Sync, time_once
from funcgrad.bench.workload import Outputs, Workload, flat_outputs
from funcgrad.errors import UsageError
from funcgrad.peers import import_peer, peer_available


class NotImplementedForWorkload(Exception):  # noqa: N818 - reads as a sentence in the runner
  """This engine has no implementation of this workload (a row marked not implemented)."""


@dataclasses.dataclass(slots=True)
class Stages:
  """Seconds of a first call and, for the jit engines, of the stages inside that same call.

  `first_call_s >= trace_s + lower_s + compile_s` always: the stages are JAX's own events
  reported during the first call, not a second compilation.
  """

  first_call_s: float | None = None
  trace_s: float | None = None
  lower_s: float | None = None
  compile_s: float | None = None
  compiles: int | None = None  # executables JAX asked for during the first call (1 for jit)
  executable_cache: str | None = None  # with an executable cache: hit, miss, refused, uncached


@dataclasses.dataclass(slots=True)
class Prepared:
  """An engine ready to time.

  Attributes:
    call: one call on already-placed inputs.
    sync: waits until `call`'s outputs are computed.
    to_numpy: flattens `call`'s outputs to NumPy leaves.
    first_output: the output of the first call, already on the host (checked before timing).
    device: where the engine ran ('cpu:0', 'cuda:0', 'host').
    device_kind: that device's kind ('cpu', 'NVIDIA H100 80GB HBM3').
    stages: the first call and its stages.
    measure_dispatch: whether a dispatch-only time (no sync per call) means something here.
    n_devices: how many devices the inputs were spread over.
    sharding: how they were spread (None on a single device).
  """

  call: Callable[[], Any]
  sync: Sync
  to_numpy: Callable[[Any], Outputs]
  first_output: Outputs
  device: str
  device_kind: str
  stages: Stages
  measure_dispatch: bool = False
  n_devices: int = 1
  sharding: str | None = None


@dataclasses.dataclass(frozen=True)
class Engine:
  """A named way to run a workload.

  Attributes:
    name: the flag value.
    description: one line for --help and the README.
    requires: the module a peer needs (None for the NumPy and JAX engines).
    prepare: `prepare(workload, inputs, device, mesh) -> Prepared` (and `cache_dir=` when
      `cacheable`).
    shardable: whether `prepare` spreads its inputs over a mesh of devices.
    cacheable: whether `prepare` can load its compiled program from an executable cache.
  """

  name: str
  description: str
  requires: str | None
  prepare: Callable[..., Prepared]
  shardable: bool = False
  cacheable: bool = False

  def available(self) -> bool:
    """Whether this engine's framework can be imported here."""
    return self.requires is None or peer_available(self.requires)


def _identity(out: Any) -> Any:
  return out


def _device_label(device: jax.Device) -> tuple[str, str]:
  return f"{'cuda' if device.platform == 'gpu' else device.platform}:{device.id}", \
      device.device_kind


def _not_implemented(engine: str, workload: Workload, why: str = "") -> NotImplementedForWorkload:
  return NotImplementedForWorkload(f"{engine} is not implemented for {workload.name}"
                                   f"{': ' + why if why else ''}")


# ---------------------------------------------------------------------------------------- NumPy


def _prepare_numpy(workload: Workload, inputs: tuple[Any, ...], device: jax.Device,
                   mesh: Mesh | None = None) -> Prepared:
  del device, mesh  # NumPy runs on the host whatever the backend.
  program = workload.peers.get("numpy")
  if program is None:
    raise _not_implemented("numpy", workload)
  if workload.kind == "train":
    call = program(inputs, workload.steps)
  else:
    call = functools.partial(program, *inputs)
  out, first = time_once(call, _identity)
  return Prepared(call, _identity, flat_outputs, flat_outputs(out), "host", "cpu",
                  Stages(first_call_s=first))


# ------------------------------------------------------------------------------------------ JAX


def _place(workload: Workload, inputs: tuple[Any, ...], device: jax.Device,
           mesh: Mesh | None) -> tuple[list[Any], dict[str, Any]]:
  """Inputs on one device, or spread over `mesh`; and what to record about where they went.

  Spread: every input split as `sharding.spec_for` says, or, for a workload with `batch_args`,
  those inputs' rows split over every device and the rest (the parameters) replicated.
  """
  if mesh is None:
    return [jax.device_put(a, device) for a in inputs], {}
  if workload.batch_args is None:
    args = [jax.tree.map(lambda leaf: sharding.shard(leaf, mesh), a) for a in inputs]
    described = jax.tree.leaves(args[0])[0]
  else:
    args = [sharding.shard_batch(a, mesh) if i in workload.batch_args
            else sharding.replicate(a, mesh) for i, a in enumerate(inputs)]
    described = args[workload.batch_args[0]]
  return args, {"n_devices": mesh.size, "sharding": sharding.describe(described)}


def _first_call_with_stages(call: Callable[[], Any]) -> tuple[Any, Stages]:
  """Runs the first call once and splits it by JAX's compile events during that call."""
  with compile_cache.compile_events() as events:
    out, first = time_once(call)
  seconds = events.stage_seconds()
  return out, Stages(first_call_s=first, trace_s=seconds["trace_s"], lower_s=seconds["lower_s"],
                     compile_s=seconds["compile_s"] + seconds["cache_retrieval_s"],
                     compiles=events.compile_requests)


def _packed(fn: Callable[..., Any]) -> Callable[..., jax.Array]:
  """`fn`'s outputs raveled into one flat array: one output buffer instead of one per leaf."""
  def packed(*args):
    leaves = jax.tree.leaves(fn(*args))
    dtype = jnp.result_type(*leaves)
    return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])

  return packed


def _unpacker(shapes: list[tuple[int, ...]]) -> Callable[[Any], Outputs]:
  """Splits a packed array back into leaves of `shapes`."""
  sizes = [int(np.prod(s)) for s in shapes]
  bounds = np.cumsum([0, *sizes])

  def unpack(flat: Any) -> Outputs:
    flat = np.asarray(flat)
    pieces = zip(bounds[:-1], bounds[1:], shapes, strict=True)
    return tuple(flat[a:b].reshape(s) for a, b, s in pieces)

  return unpack


def _train_loop(workload: Workload, args: list[Any], style: str) -> Callable[[], Any]:
  """`steps` optimiser steps per call, the parameters and state carried from call to call.

  eager: the step op by op; jit: the step compiled once, parameters and state donated (updated in
  place), one dispatch per step; jit_scan: all `steps` steps in one compiled `lax.scan`.
  """
  params, *data = args
  optimizer, step, steps = workload.optimizer, workload.fn, workload.steps
  params = jax.tree.map(jnp.copy, params)  # a fresh buffer: the caller's array is never donated
  # The state committed where the parameters are, as the step's outputs will be: otherwise the
  # second step sees differently placed inputs and compiles the step a second time.
  where = jax.tree.leaves(params)[0].sharding
  carry = {"params": params, "state": jax.device_put(optimizer.init(params), where)}
  if style == "jit_scan":
    def many(params, state, *data):
      def body(c, _):
        p, s, loss = step(*c, *data)
        return (p, s), loss

      (params, state), losses_ = jax.lax.scan(body, (params, state), None, length=steps)
      return params, state, losses_[-1]

    run = jax.jit(many, donate_argnums=(0, 1))

    def call():
      carry["params"], carry["state"], loss = run(carry["params"], carry["state"], *data)
      return carry["params"], loss

    return call
  one = jax.jit(step, donate_argnums=(0, 1)) if style == "jit" else step

  def call():
    loss = None
    for _ in range(steps):
      carry["params"], carry["state"], loss = one(carry["params"], carry["state"], *data)
    return carry["params"], loss

  return call


def _cached_first_call(fn: Callable[..., Any], args: list[Any],
                       cache_dir: str) -> tuple[Callable[[], Any], Any, Stages]:
  """The first call through the executable cache: loaded (no trace, no lower, no compile) or
  compiled and stored; then the loaded or compiled executable is what each call runs."""
  held: dict[str, Any] = {}

  def first():
    held["compiled"], held["info"] = compile_cache.load_or_compile(fn, args, cache_dir)
    return held["compiled"](*args)

  out, stages = _first_call_with_stages(first)
  stages.executable_cache = held["info"].status
  if held["info"].status == "hit":
    stages.compile_s = held["info"].load_s  # reading, checking and loading the executable
  return functools.partial(held["compiled"], *args), out, stages


def _prepare_jax(workload: Workload, inputs: tuple[Any, ...], device: jax.Device,
                 mesh: Mesh | None = None, style: str = "eager",
                 cache_dir: str | None = None) -> Prepared:
  """The JAX engines; with `cache_dir` (jit and jit_packed on a value or value-and-grad
  workload), the compiled program comes from, or goes to, the executable cache."""
  if mesh is not None and not workload.shardable:
    raise UsageError(f"--devices/--mesh do not apply to {workload.name}: its inputs are not "
                     "split over devices.")
  if workload.kind == "train" and style == "jit_packed":
    raise _not_implemented(style, workload, "a training step returns its parameters")
  if workload.kind != "train" and style == "jit_scan":
    raise _not_implemented(style, workload, "only training workloads loop over steps")
  args, placement = _place(workload, inputs, device, mesh)
  jax.clear_caches()  # the first call compiles from scratch, as in a fresh process
  to_numpy = flat_outputs
  if workload.kind == "train":
    call = _train_loop(workload, args, style)
  else:
    fn = workload.jax_program()
    if style == "jit_packed":
      shapes = [np.shape(leaf) for leaf in jax.tree.leaves(jax.eval_shape(fn, *args))]
      fn, to_numpy = _packed(fn), _unpacker(shapes)
    call = functools.partial(jax.jit(fn) if style != "eager" else fn, *args)
  if cache_dir is not None and style != "eager" and workload.kind != "train":
    call, out, stages = _cached_first_call(fn, args, cache_dir)
  else:
    out, stages = _first_call_with_stages(call)
  if style == "eager":
    stages = Stages(first_call_s=stages.first_call_s)  # eager compiles per primitive: no stages
  return Prepared(call, jax.block_until_ready, to_numpy, to_numpy(out), *_device_label(device),
                  stages, measure_dispatch=style != "eager", **placement)


# ---------------------------------------------------------------------------------------- torch


def _torch_tensors(torch: Any, inputs: tuple[Any, ...], where: str) -> list[Any]:
  def tensor(leaf):
    leaf = np.asarray(leaf)
    if leaf.dtype.name == "bfloat16":
      return torch.from_numpy(leaf.astype(np.float32)).to(where, torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(leaf)).to(where)

  return [jax.tree.map(tensor, a) for a in inputs]


def _torch_value_and_grads(torch: Any, loss: Callable[..., Any], argnums: tuple[int, ...],
                           tensors: list[Any]) -> Any:
  wrt = [tensors[i] for i in argnums]
  leaves, treedef = jax.tree.flatten(wrt)
  value = loss(*tensors)
  grads = torch.autograd.grad(value, leaves)
  return value, tuple(jax.tree.unflatten(treedef, list(grads)))


def _prepare_torch(workload: Workload, inputs: tuple[Any, ...], device: jax.Device,
                   mesh: Mesh | None = None, compiled: bool = False) -> Prepared:
  del mesh  # torch runs on one device
  name = "torch_compile" if compiled else "torch_eager"
  program = workload.peers.get("torch")
  if program is None or workload.kind == "value":
    raise _not_implemented(name, workload)
  torch = import_peer("torch")
  on_gpu = device.platform == "gpu" and torch.cuda.is_available()
  where = "cuda" if on_gpu else "cpu"
  tensors = _torch_tensors(torch, inputs, where)
  if compiled:
    # Cold: the first call compiles forward and backward with Inductor.
    _compat.torch_reset_compiled(torch)
  if workload.kind == "train":
    call = program(torch, tensors, workload.steps, compiled)
  else:
    for i in workload.argnums:
      jax.tree.map(lambda t: t.requires_grad_(True), tensors[i])
    loss = functools.partial(program, torch)
    if compiled:
      loss = torch.compile(loss, dynamic=False)
    call = functools.partial(_torch_value_and_grads, torch, loss, workload.argnums, tensors)
  sync = (lambda out: (torch.cuda.synchronize(), out)[1]) if on_gpu else _identity
  out, first = time_once(call, sync)
  kind = torch.cuda.get_device_name() if on_gpu else "cpu"
  return Prepared(call, sync, flat_outputs, flat_outputs(out), f"{where}:0", kind,
                  Stages(first_call_s=first))


# ----------------------------------------------------------------------------------- TensorFlow


def _prepare_tf(workload: Workload, inputs: tuple[Any, ...], device: jax.Device,
                mesh: Mesh | None = None, wrap: str = "eager") -> Prepared:
  del mesh
  program = workload.peers.get("tf")
  if program is None or workload.kind != "value_and_grad":
    raise _not_implemented(f"tf_{wrap}", workload)
  tf = import_peer("tensorflow")
  on_gpu = device.platform == "gpu" and bool(tf.config.list_physical_devices("GPU"))
  where = "/GPU:0" if on_gpu else "/CPU:0"

  def value_and_grads(*tensors):
    with tf.GradientTape() as tape:
      wrt = [tensors[i] for i in workload.argnums]
      leaves, treedef = jax.tree.flatten(wrt)
      for leaf in leaves:
        tape.watch(leaf)
      value = program(tf, *tensors)
    return value, tuple(jax.tree.unflatten(treedef, tape.gradient(value, leaves)))

  wrappers = {"eager": lambda f: f, "function": tf.function,
              "xla": functools.partial(tf.function, jit_compile=True)}
  with tf.device(where):
    tensors = [jax.tree.map(tf.constant, a) for a in inputs]
    fn = wrappers[wrap](value_and_grads)

  def call():
    with tf.device(where):
      return fn(*tensors)

  # TF's CPU kernels finish before returning; .numpy() in the check copies to the host.
  out, first = time_once(call, _identity)
  return Prepared(call, _identity, flat_outputs, flat_outputs(out),
                  f"{'cuda' if on_gpu else 'cpu'}:0", "gpu" if on_gpu else "cpu",
                  Stages(first_call_s=first))


ENGINES = {
    e.name: e
    for e in (
        Engine("numpy", "hand-written NumPy forward + backward", None, _prepare_numpy),
        Engine("eager", "JAX without jit: jax.value_and_grad, op by op", None, _prepare_jax,
               shardable=True),
        Engine("jit", "jax.jit(jax.value_and_grad(...)): traced once, compiled by XLA", None,
               functools.partial(_prepare_jax, style="jit"), shardable=True, cacheable=True),
        Engine("jit_packed", "jax.jit, the value and gradients returned packed in one array",
               None, functools.partial(_prepare_jax, style="jit_packed"), shardable=True,
               cacheable=True),
        Engine("jit_scan", "jax.jit of a lax.scan over a training workload's steps", None,
               functools.partial(_prepare_jax, style="jit_scan"), shardable=True),
        Engine("torch_eager", "PyTorch autograd, eager", "torch", _prepare_torch),
        Engine("torch_compile", "PyTorch torch.compile (Inductor) + autograd", "torch",
               functools.partial(_prepare_torch, compiled=True)),
        Engine("tf_eager", "TensorFlow GradientTape, eager", "tensorflow", _prepare_tf),
        Engine("tf_function", "TensorFlow tf.function (graph)", "tensorflow",
               functools.partial(_prepare_tf, wrap="function")),
        Engine("tf_xla", "TensorFlow tf.function(jit_compile=True) (XLA)", "tensorflow",
               functools.partial(_prepare_tf, wrap="xla")),
    )
}

# The engines that run any JAX function: what `funcgrad.compare` offers for a user's function.
JAX_ENGINES = ("eager", "jit", "jit_packed")


def get_engine(name: str) -> Engine:
  """Looks up an engine by name.

  Raises:
    UsageError: naming the valid engines.
  """
  if name not in ENGINES:
    raise UsageError(f"Unknown engine {name!r}. Valid: {', '.join(ENGINES)}.")
  return ENGINES[name]
