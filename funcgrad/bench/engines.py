"""One engine per way of running a workload; each declares the workload kinds it runs.

An engine is a name, a family (numpy, jax, torch, tf), the workload kinds it implements and a
`prepare(workload, inputs, placement) -> Prepared`. `prepare` places the inputs, does whatever
the engine does once (tracing, lowering, compiling), runs the first call (timed, and for the
compiled JAX engines split into trace / lower / compile by JAX's own events during that very
call), and returns a `Prepared`: a zero-argument `call` for the timer, the `sync` that waits for
its outputs, and `to_numpy` for the check. The runner asks `Engine.missing(workload)` first and
marks the row `not_implemented` from the answer.

The JAX engines are small builders (`_eager`, `_jit`, `_jit_packed`, `_jit_scan`) inside one
shell (`_jax_prepare`): adding one is a builder and an `ENGINES` entry. Peers are imported only
when asked for; a missing one raises `peers.PeerUnavailableError` naming the extra.
"""

import dataclasses
import functools
from collections.abc import Callable, Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad import _compat, compile_cache, graphs, optimize, sharding
from funcgrad.bench import user_torch
from funcgrad.bench.call_counts import CallCounts, counted
from funcgrad.bench.case import Placement
from funcgrad.bench.timing import Sync, time_once
from funcgrad.bench.workloads.model import KINDS, Outputs, Workload, flat_outputs
from funcgrad.errors import UsageError
from funcgrad.peers import import_peer, peer_available

FAMILIES = {"numpy": None, "jax": None, "torch": "torch", "tf": "tensorflow"}  # -> module needed
VALUE_KINDS = frozenset({"value_and_grad", "value"})
ALL_KINDS = frozenset(KINDS)


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
  counts: CallCounts | None = None  # calls after the first and the compilations during them


@dataclasses.dataclass(frozen=True)
class Engine:
  """A named way to run a workload.

  Attributes:
    name: the flag value.
    description: one line for --help and the README.
    family: 'numpy', 'jax', 'torch' or 'tf': a non-JAX engine runs the workload's program for its
      family (`Workload.peers[family]`), a JAX engine the workload's own function.
    kinds: the workload kinds (`workloads.model.KINDS`) it implements.
    prepare: `prepare(workload, inputs, placement) -> Prepared`.
    shardable: whether `prepare` spreads its inputs over `placement.mesh`.
    cacheable: whether `prepare` can load its compiled program from `placement.cache_dir`.
    op_by_op: whether it runs primitive by primitive out of JAX's caches (eager), which every
      later JAX engine's cold first call (`jax.clear_caches()`) would empty, making it compile
      each primitive again: the runner prepares such an engine after the others.
  """

  name: str
  description: str
  family: str
  kinds: Collection[str]
  prepare: Callable[[Workload, tuple[Any, ...], Placement], Prepared]
  shardable: bool = False
  cacheable: bool = False
  op_by_op: bool = False

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"Invalid engine {self.family=}: expected one of {tuple(FAMILIES)}.")
    if not set(self.kinds) <= ALL_KINDS:
      raise ValueError(f"Invalid engine {self.kinds=}: expected some of {KINDS}.")

  @property
  def requires(self) -> str | None:
    """The module this engine's framework needs (None for NumPy and JAX)."""
    return FAMILIES[self.family]

  def available(self) -> bool:
    """Whether this engine's framework can be imported here."""
    return self.requires is None or peer_available(self.requires)

  def missing(self, workload: Workload) -> str | None:
    """Why this engine does not implement `workload` (None: it does)."""
    if self.name in workload.unsupported:
      return workload.unsupported[self.name]
    if workload.kind not in self.kinds:
      runs = ", ".join(k for k in KINDS if k in self.kinds)
      return f"{self.name} is not implemented for {workload.name}: it runs only {runs} workloads"
    if self.family != "jax" and self.family not in workload.peers:
      return f"{self.name} is not implemented for {workload.name}: it has no {self.family} program"
    return None


def _identity(out: Any) -> Any:
  return out


def _device_label(device: jax.Device) -> tuple[str, str]:
  return f"{'cuda' if device.platform == 'gpu' else device.platform}:{device.id}", \
      device.device_kind


# ---------------------------------------------------------------------------------------- NumPy


def _prepare_numpy(workload: Workload, inputs: tuple[Any, ...], placement: Placement) -> Prepared:
  del placement  # NumPy runs on the host whatever the backend.
  program = workload.peers["numpy"]
  if workload.kind == "train":
    call = program(inputs, workload.steps)
  else:
    call = functools.partial(program, *inputs)
  out, first = time_once(call, _identity)
  return Prepared(call, _identity, flat_outputs, flat_outputs(out), "host", "cpu",
                  Stages(first_call_s=first))


# ------------------------------------------------------------------------------------------ JAX


@dataclasses.dataclass(frozen=True)
class Built:
  """What a JAX builder makes of a workload on placed inputs.

  Attributes:
    call: one call (kind train: `steps` steps, carrying the parameters and optimiser state).
    to_numpy: its outputs as NumPy leaves.
    cached_fn: what the executable cache compiles for this engine (None: never cached).
    staged: whether the first call compiles (False: eager; no trace / lower / compile stages).
  """

  call: Callable[[], Any]
  to_numpy: Callable[[Any], Outputs] = flat_outputs
  cached_fn: Callable[..., Any] | None = None
  staged: bool = True


def _place(workload: Workload, inputs: tuple[Any, ...],
           placement: Placement) -> tuple[list[Any], dict[str, Any]]:
  """Inputs on one device, or spread over `mesh`; and what to record about where they went.

  Spread: every input split as `sharding.spec_for` says, or, for a workload with `batch_args`,
  those inputs' rows split over every device and the rest (the parameters) replicated.
  """
  mesh = placement.mesh
  if mesh is None:
    return [jax.device_put(a, placement.device) for a in inputs], {}
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


def _train_state(workload: Workload, params: Any) -> dict[str, Any]:
  """The parameters (a fresh buffer: the caller's array is never donated) and optimiser state
  that a training call carries to the next."""
  params = jax.tree.map(jnp.copy, params)
  # The state committed where the parameters are, as the step's outputs will be: otherwise the
  # second step sees differently placed inputs and compiles the step a second time.
  where = jax.tree.leaves(params)[0].sharding
  return {"params": params, "state": jax.device_put(workload.optimizer.init(params), where)}


def _step_loop(workload: Workload, args: list[Any], step: Callable[..., Any]) -> Callable[[], Any]:
  """`workload.steps` calls of `step` per call, one dispatch per step."""
  params, *data = args
  carry = _train_state(workload, params)

  def call():
    loss = None
    for _ in range(workload.steps):
      carry["params"], carry["state"], loss = step(carry["params"], carry["state"], *data)
    return carry["params"], loss

  return call


def _eager(workload: Workload, args: list[Any]) -> Built:
  """Op by op: the function (or the training step) without jit; a jitted function's inner one
  (`workload.eager_fn`) where it has one."""
  if workload.kind == "train":
    return Built(_step_loop(workload, args, workload.fn), staged=False)
  return Built(functools.partial(workload.eager_program(), *args), staged=False)


def _jit(workload: Workload, args: list[Any]) -> Built:
  """`jax.jit` of the function; a training step compiled once with its parameters and state
  donated (updated in place), one dispatch per step."""
  if workload.kind == "train":
    return Built(_step_loop(workload, args, jax.jit(workload.fn, donate_argnums=(0, 1))))
  fn = workload.jax_program()
  return Built(functools.partial(jax.jit(fn), *args), cached_fn=fn)


def _jit_packed(workload: Workload, args: list[Any]) -> Built:
  """`jax.jit` with every output raveled into one array: one output buffer, not one per leaf."""
  fn = workload.jax_program()
  shapes = [np.shape(leaf) for leaf in jax.tree.leaves(jax.eval_shape(fn, *args))]
  packed = _packed(fn)
  return Built(functools.partial(jax.jit(packed), *args), _unpacker(shapes), cached_fn=packed)


def _scan_program(workload: Workload, args: list[Any],
                  fused: bool) -> tuple[Callable[..., Any], dict[str, Any], list[Any]]:
  """The jitted `optimize.scan_steps` program of a training workload (parameters and state
  donated), its starting carry (scalar state widened where the step takes it) and its data."""
  params, *data = args
  carry = _train_state(workload, params)
  state = optimize.scan_state(workload.fn, carry["params"], carry["state"], *data)
  carry["state"] = jax.device_put(state, jax.tree.leaves(carry["params"])[0].sharding)
  if fused:
    optimize.check_fused(carry["params"], carry["state"], workload.steps)
  many = optimize.scan_steps(workload.fn, workload.steps, fused)

  def last_loss(params, state, *data):  # in the program: an eager index would compile its own
    params, state, losses = many(params, state, *data)
    return params, state, losses[-1]

  return jax.jit(last_loss, donate_argnums=(0, 1)), carry, data


def _scan_built(workload: Workload, args: list[Any], fused: bool) -> Built:
  run, carry, data = _scan_program(workload, args, fused)

  def call():
    carry["params"], carry["state"], loss = run(carry["params"], carry["state"], *data)
    return carry["params"], loss

  return Built(call)


def _jit_scan(workload: Workload, args: list[Any]) -> Built:
  """A call's `steps` training steps in one compiled `lax.scan`, parameters and state donated,
  SCAN_UNROLL steps per loop trip (`optimize.scan_steps`)."""
  return _scan_built(workload, args, fused=False)


def _jit_scan_fused(workload: Workload, args: list[Any]) -> Built:
  """`jit_scan` with parameters and optimiser state raveled into one vector as the carry."""
  return _scan_built(workload, args, fused=True)


def fusions_per_step(engine: Engine, workload: Workload, inputs: tuple[Any, ...]) -> float | None:
  """Fused XLA kernels per step of the program `engine` compiles for a training workload, from
  its optimised HLO (`graphs.fusions_per_step`); None for engines that are not one XLA program
  per step or per call (eager, the peers)."""
  if workload.kind != "train" or engine.name not in ("jit", "jit_scan", "jit_scan_fused"):
    return None
  args = [jax.device_put(a) for a in inputs]
  if engine.name == "jit":
    carry = _train_state(workload, args[0])
    hlo = jax.jit(workload.fn).lower(carry["params"], carry["state"], *args[1:]).compile()
    return graphs.fusions_per_step(hlo.as_text(), 1)
  run, carry, data = _scan_program(workload, args, engine.name == "jit_scan_fused")
  hlo = run.lower(carry["params"], carry["state"], *data).compile()
  return graphs.fusions_per_step(hlo.as_text(), workload.steps)


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


def _jax_prepare(build: Callable[[Workload, list[Any]], Built], workload: Workload,
                 inputs: tuple[Any, ...], placement: Placement) -> Prepared:
  """The shell every JAX engine shares: place the inputs, clear JAX's caches, build, run the
  first call (through the executable cache when `placement.cache_dir` is set and the builder
  says what to compile)."""
  args, placed = _place(workload, inputs, placement)
  jax.clear_caches()  # the first call compiles from scratch, as in a fresh process
  built = build(workload, args)
  if placement.cache_dir is not None and built.cached_fn is not None:
    call, out, stages = _cached_first_call(built.cached_fn, args, placement.cache_dir)
  else:
    call = built.call
    out, stages = _first_call_with_stages(call)
  if not built.staged:
    stages = Stages(first_call_s=stages.first_call_s)  # eager compiles per primitive: no stages
  call, counts = counted(call)
  return Prepared(call, jax.block_until_ready, built.to_numpy, built.to_numpy(out),
                  *_device_label(placement.device), stages, measure_dispatch=built.staged,
                  counts=counts, **placed)


def jax_engine(name: str, description: str, build: Callable[[Workload, list[Any]], Built],
               kinds: Collection[str], cacheable: bool = False, op_by_op: bool = False
               ) -> Engine:
  """A JAX engine: `build` inside the shared shell (every JAX engine shards)."""
  return Engine(name, description, "jax", frozenset(kinds),
                functools.partial(_jax_prepare, build), shardable=True, cacheable=cacheable,
                op_by_op=op_by_op)


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


def _prepare_torch(workload: Workload, inputs: tuple[Any, ...], placement: Placement,
                   compiled: bool = False) -> Prepared:
  program = workload.peers["torch"]  # torch runs on one device: no mesh
  torch = import_peer("torch")
  if isinstance(program, user_torch.TorchVersion):  # a user's own: it takes the user's arguments
    peer = program.prepare(placement.device.platform == "gpu", compiled)
    out, first = time_once(peer.call, peer.sync)
    return Prepared(peer.call, peer.sync, flat_outputs, flat_outputs(out), peer.device,
                    peer.device_kind, Stages(first_call_s=first))
  on_gpu = placement.device.platform == "gpu" and torch.cuda.is_available()
  where = "cuda" if on_gpu else "cpu"
  tensors = _torch_tensors(torch, inputs, where)
  if compiled:
    # Cold: the first call compiles forward and backward with Inductor.
    _compat.torch_reset_compiled(torch)
  if workload.kind == "train":
    call = program(torch, tensors, workload.steps, compiled)
  elif workload.kind == "value":
    fn = torch.compile(program, dynamic=False) if compiled else program
    call = functools.partial(fn, torch, *tensors)
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


def _prepare_tf(workload: Workload, inputs: tuple[Any, ...], placement: Placement,
                wrap: str = "eager") -> Prepared:
  program = workload.peers["tf"]
  tf = import_peer("tensorflow")
  on_gpu = placement.device.platform == "gpu" and bool(tf.config.list_physical_devices("GPU"))
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


TORCH_KINDS = frozenset({"value_and_grad", "value", "train"})
TF_KINDS = frozenset({"value_and_grad"})

ENGINES = {
    e.name: e
    for e in (
        Engine("numpy", "hand-written NumPy forward + backward", "numpy", ALL_KINDS,
               _prepare_numpy),
        jax_engine("eager", "JAX without jit: jax.value_and_grad, op by op", _eager, ALL_KINDS,
                   op_by_op=True),
        jax_engine("jit", "jax.jit(jax.value_and_grad(...)): traced once, compiled by XLA", _jit,
                   ALL_KINDS, cacheable=True),
        jax_engine("jit_packed", "jax.jit, the value and gradients returned packed in one array",
                   _jit_packed, VALUE_KINDS, cacheable=True),
        jax_engine("jit_scan", "jax.jit of a lax.scan over a training workload's steps", _jit_scan,
                   {"train"}),
        jax_engine("jit_scan_fused", "jit_scan with parameters and optimiser state in one vector",
                   _jit_scan_fused, {"train"}),
        Engine("torch_eager", "PyTorch autograd, eager", "torch", TORCH_KINDS, _prepare_torch),
        Engine("torch_compile", "PyTorch torch.compile (Inductor) + autograd", "torch",
               TORCH_KINDS, functools.partial(_prepare_torch, compiled=True)),
        Engine("tf_eager", "TensorFlow GradientTape, eager", "tf", TF_KINDS, _prepare_tf),
        Engine("tf_function", "TensorFlow tf.function (graph)", "tf", TF_KINDS,
               functools.partial(_prepare_tf, wrap="function")),
        Engine("tf_xla", "TensorFlow tf.function(jit_compile=True) (XLA)", "tf", TF_KINDS,
               functools.partial(_prepare_tf, wrap="xla")),
    )
}

# The engines that run any JAX function: what `funcgrad.compare` offers for a user's function.
JAX_ENGINES = tuple(n for n, e in ENGINES.items() if e.family == "jax" and e.kinds >= VALUE_KINDS)


def get_engine(name: str) -> Engine:
  """Looks up an engine by name.

  Raises:
    UsageError: naming the valid engines.
  """
  if name not in ENGINES:
    raise UsageError(f"Unknown engine {name!r}. Valid: {', '.join(ENGINES)}.")
  return ENGINES[name]
