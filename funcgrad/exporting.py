"""Serialise a jitted function with `jax.export` and run it later without its source.

The file is a small container around `Exported.serialize()`: a magic line, the length of a JSON
header, the header (metadata, payload length, SHA-256), then the payload. Reading checks each of
these before handing the payload to JAX's deserialiser, so an empty, foreign, truncated,
corrupted or crafted file (a FIFO, /dev/zero, a header of the wrong shape) is a clear
`UsageError`, never a hang or a `struct.error` from deep inside flatbuffers.

This module imports only JAX, NumPy and funcgrad's small file and shape helpers: a process that
runs an exported graph imports it and not the code the graph came from.
"""

import hashlib
import json
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import jax
import numpy as np
from jax import export

from funcgrad import files, outputs, shapes
from funcgrad.errors import UsageError

MAGIC = b"funcgrad-export/1\n"
MAX_FILE_BYTES = 256 * 2**20  # funcgrad's graphs are a few KiB; a larger file is refused unread
MAX_HEADER_BYTES = 64 * 2**10
_HEADER_LENGTH = struct.Struct("<I")
# JAX's device platform -> the lowering platform names jax.export uses.
_EXPORT_PLATFORMS = {"cpu": ("cpu",), "gpu": ("cuda", "rocm"), "tpu": ("tpu",)}


def parse_shape(text: str, flag: str = "--shape") -> tuple[int | str, ...]:
  """'3x4' -> (3, 4); 'N,D' -> ('N', 'D') (symbolic); '12' -> (12,); 'N' -> ('N',).

  Raises:
    UsageError: naming the flag, the bad shape and the accepted forms.
  """
  return shapes.parse_shape(text.replace(",", "x"), flag, symbolic=True)


def input_specs(shape: tuple[int | str, ...], dtype: Any, count: int) -> list[jax.ShapeDtypeStruct]:
  """`count` input specs of one shape; symbolic names become `jax.export` dimension variables."""
  if all(isinstance(d, int) for d in shape):
    dims = shape
  else:
    dims = export.symbolic_shape(", ".join(str(d) for d in shape))
  return [jax.ShapeDtypeStruct(dims, dtype) for _ in range(count)]


def export_function(fn: Callable[..., Any], specs: Sequence[jax.ShapeDtypeStruct],
                    platforms: Sequence[str] = ("cpu", "cuda")) -> export.Exported:
  """Exports `jax.jit(fn)` for these input specs and lowering platforms."""
  return export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)


def write_artifact(path: str, exported: export.Exported, metadata: dict[str, Any]) -> int:
  """Writes the container atomically (umask mode, no temporary file left on failure); returns
  its size in bytes.

  Raises:
    UsageError: the file cannot be written.
  """
  payload = bytes(exported.serialize())
  header = json.dumps({**metadata, "platforms": list(exported.platforms),
                       "payload_bytes": len(payload),
                       "sha256": hashlib.sha256(payload).hexdigest()}).encode()
  return outputs.atomic_write(path, MAGIC + _HEADER_LENGTH.pack(len(header)) + header + payload)


def _field_error(path: str, field: str, expected: str) -> UsageError:
  return UsageError(f"{path!r} has a bad header: field {field!r} must be {expected}.")


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "workload": (lambda v: isinstance(v, str) and 0 < len(v) <= 200, "a workload name"),
    "example_shape": (lambda v: isinstance(v, list) and len(v) <= 32
                      and all(_is_int(d) and 0 < d <= shapes.MAX_DIM for d in v),
                      "a list of positive integers"),
    "platforms": (lambda v: isinstance(v, list) and 0 < len(v) <= 8
                  and all(isinstance(p, str) for p in v), "a list of platform names"),
    "payload_bytes": (lambda v: _is_int(v) and 0 < v <= MAX_FILE_BYTES,
                      f"a byte count in 1..{MAX_FILE_BYTES}"),
    "sha256": (lambda v: isinstance(v, str) and len(v) == 64
               and all(c in "0123456789abcdef" for c in v), "64 hexadecimal digits"),
}
_OPTIONAL_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "shape": (lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v),
              "a list of dimensions as text"),
    "dtype": (lambda v: isinstance(v, str), "a dtype name"),
}


def parse_header(raw: bytes, path: str) -> dict[str, Any]:
  """The container's JSON header, each field checked for presence and type.

  Raises:
    UsageError: naming the file and the missing or malformed field.
  """
  try:
    header = json.loads(raw)
  except (UnicodeDecodeError, json.JSONDecodeError):
    raise UsageError(f"{path!r} is truncated or corrupted: its header is not valid JSON.") from None
  except RecursionError:
    raise UsageError(f"{path!r} has a bad header: it is nested too deeply.") from None
  except ValueError as e:  # e.g. an integer of more than 4300 digits
    raise UsageError(f"{path!r} has a bad header: {str(e).splitlines()[0][:120]}.") from None
  if not isinstance(header, dict):
    raise UsageError(f"{path!r} has a bad header: a JSON {type(header).__name__}, not an object "
                     "with fields workload, example_shape, platforms, payload_bytes, sha256.")
  for field, (valid, expected) in _FIELDS.items():
    if field not in header:
      raise UsageError(f"{path!r} has a bad header: field {field!r} is missing.")
    if not valid(header[field]):
      raise _field_error(path, field, expected)
  for field, (valid, expected) in _OPTIONAL_FIELDS.items():
    if field in header and not valid(header[field]):
      raise _field_error(path, field, expected)
  return header


def _read_exact(f: BinaryIO, size: int) -> bytes:
  data = f.read(size)
  return data if len(data) == size else b""


def read_artifact(path: str) -> tuple[export.Exported, dict[str, Any]]:
  """Reads and validates a container written by `write_artifact`.

  The path must be a regular file of at most `MAX_FILE_BYTES`; the magic and the header are read
  and checked before the payload.

  Raises:
    UsageError: the file is missing, not a regular file, too large, empty, not a funcgrad export,
      truncated, corrupted, its header malformed, or not deserialisable; the message names the
      file and what is wrong.
  """
  with files.open_regular(path, MAX_FILE_BYTES, "Export file") as f:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
      raise UsageError(f"{path!r} is empty, not a funcgrad export file.")
    if f.read(len(MAGIC)) != MAGIC:
      raise UsageError(f"{path!r} is not a funcgrad export file (it does not start with "
                       f"{MAGIC.strip().decode()!r}); write one with experiments.export_graph.")
    length = _read_exact(f, _HEADER_LENGTH.size)
    if not length:
      raise UsageError(f"{path!r} is truncated: its header is incomplete.")
    (header_length,) = _HEADER_LENGTH.unpack(length)
    if header_length > MAX_HEADER_BYTES:
      raise UsageError(f"{path!r} has a bad header: it claims {header_length} bytes, more than "
                       f"the {MAX_HEADER_BYTES} accepted.")
    header = parse_header(f.read(header_length), path)
    held = size - len(MAGIC) - _HEADER_LENGTH.size - header_length
    if held != header["payload_bytes"]:
      raise UsageError(f"{path!r} is truncated or padded: the graph should be "
                       f"{header['payload_bytes']} bytes, the file holds {max(held, 0)}.")
    payload = f.read(held)
  if hashlib.sha256(payload).hexdigest() != header["sha256"]:
    raise UsageError(f"{path!r} is corrupted: its SHA-256 does not match the one recorded.")
  try:
    exported = export.deserialize(bytearray(payload))
  except Exception as e:  # noqa: BLE001 - any deserialiser failure is a bad file to the user.
    raise UsageError(f"{path!r} could not be deserialised by this JAX ({jax.__version__}): "
                     f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
  check_header_matches(path, header, exported)
  return exported, header


def check_header_matches(path: str, header: dict[str, Any], exported: export.Exported) -> None:
  """Raises UsageError unless the header describes the graph (rank, dtype, example shape)."""
  avals = exported.in_avals
  if not avals:
    raise UsageError(f"{path!r} holds a graph without inputs; it is not a funcgrad export.")
  rank = len(avals[0].shape)
  if len(header["example_shape"]) != rank:
    raise _field_error(path, "example_shape", f"{rank} dimension(s), as the graph's inputs")
  if "shape" in header and len(header["shape"]) != rank:
    raise _field_error(path, "shape", f"{rank} dimension(s), as the graph's inputs")
  if "dtype" in header and header["dtype"] != np.dtype(avals[0].dtype).name:
    raise _field_error(path, "dtype", f"the graph's input dtype {np.dtype(avals[0].dtype).name}")
  if not set(header["platforms"]) <= set(exported.platforms):
    raise _field_error(path, "platforms", f"the graph's {list(exported.platforms)}")


def check_platform(exported: export.Exported) -> None:
  """Raises ValueError unless `exported` was lowered for the default backend."""
  backend = jax.default_backend()
  accepted = _EXPORT_PLATFORMS.get(backend, (backend,))
  if not set(accepted) & set(exported.platforms):
    raise UsageError(f"This graph was exported for {', '.join(exported.platforms)} but this "
                     f"process runs on {backend}; export it with --platforms including "
                     f"{accepted[0]}.")


def check_inputs(exported: export.Exported, arrays: Sequence[Any]) -> None:
  """Raises UsageError if the arrays (or `jax.ShapeDtypeStruct`s: checked before allocating) do
  not fit the exported input shapes and dtypes."""
  if len(arrays) != len(exported.in_avals):
    raise UsageError(f"The graph takes {len(exported.in_avals)} inputs, got {len(arrays)}.")
  for i, (array, aval) in enumerate(zip(arrays, exported.in_avals, strict=True)):
    expected = "x".join(str(d) for d in aval.shape)
    if array.dtype != aval.dtype:
      raise UsageError(f"Input {i} has dtype {array.dtype}; the graph takes {aval.dtype}.")
    if len(array.shape) != len(aval.shape) or any(
        isinstance(d, int) and d != n for d, n in zip(aval.shape, array.shape, strict=True)):
      raise UsageError(f"Input {i} has shape {'x'.join(map(str, array.shape)) or 'scalar'}; the "
                       f"graph takes {expected} (symbolic dimensions take any size).")


FLOAT_KINDS = "f"  # run_exported feeds random floats; value+grads needs float inputs


def check_float_inputs(path: str, exported: export.Exported) -> None:
  """Raises UsageError unless every input of the graph is a float (the gradients need one)."""
  for i, aval in enumerate(exported.in_avals):
    dtype = np.dtype(aval.dtype)
    if dtype.kind not in FLOAT_KINDS and dtype.name != "bfloat16":
      raise UsageError(f"{path!r} holds a graph whose input {i} is {dtype.name}; funcgrad's "
                       "graphs take float inputs (float32, bfloat16, float16, float64).")


def output_specs(path: str, exported: export.Exported,
                 specs: Sequence[jax.ShapeDtypeStruct]) -> list[jax.ShapeDtypeStruct]:
  """The shapes and dtypes the graph would return for inputs `specs`, found without running it
  or allocating anything (`jax.eval_shape`), so that outputs can be bounded first.

  Raises:
    UsageError: the graph refuses these shapes (a violated shape constraint, a dimension that
      does not divide...), naming the file and what JAX said.
  """
  try:
    out = jax.eval_shape(exported.call, *specs)
  except Exception as e:  # noqa: BLE001 - any refusal of the shapes is the graph's, told as one line
    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    shape = "x".join(map(str, specs[0].shape)) if specs else "?"
    raise UsageError(f"{path!r}: the graph refuses inputs of shape {shape} "
                     f"({type(e).__name__}: {first[:200]}); try another --shape.") from None
  return list(jax.tree.leaves(out))


def call(path: str, exported: export.Exported, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
  """Runs the graph on `arrays` and returns its outputs as NumPy arrays.

  Raises:
    UsageError: the graph refuses the inputs when it runs (a violated shape constraint is checked
      inside the graph), naming the file and the first line of what JAX said.
  """
  try:
    return [np.asarray(o) for o in jax.tree.leaves(exported.call(*arrays))]
  except (ValueError, TypeError, jax.errors.JaxRuntimeError) as e:
    said = next((ln.strip() for ln in str(e).splitlines() if "error:" in ln),
                next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__))
    shape = "x".join(map(str, np.shape(arrays[0]))) if len(arrays) else "?"
    raise UsageError(f"{path!r}: the graph refuses inputs of shape {shape} "
                     f"({said.split('error: ', 1)[-1][:240]}); try another --shape.") from None
