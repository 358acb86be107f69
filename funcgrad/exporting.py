"""Serialise a jitted function with `jax.export` and run it later without its source.

The file is a small container around `Exported.serialize()`: a magic line, the length of a JSON
header, the header (metadata, payload length, SHA-256), then the payload. Reading checks each of
these before handing the payload to JAX's deserialiser, so an empty, foreign, truncated or
corrupted file is a clear `ValueError`, never a `struct.error` from deep inside flatbuffers.

This module imports only JAX and NumPy: a process that runs an exported graph imports it and not
the code the graph came from.
"""

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax import export

from funcgrad.errors import UsageError

MAGIC = b"funcgrad-export/1\n"
_HEADER_LENGTH = struct.Struct("<I")
# JAX's device platform -> the lowering platform names jax.export uses.
_EXPORT_PLATFORMS = {"cpu": ("cpu",), "gpu": ("cuda", "rocm"), "tpu": ("tpu",)}


def parse_shape(text: str) -> tuple[int | str, ...]:
  """'3x4' -> (3, 4); 'N,D' -> ('N', 'D') (symbolic); '12' -> (12,); 'N' -> ('N',).

  Raises:
    UsageError: naming the bad shape and the accepted forms.
  """
  parts = [p.strip() for p in text.replace(",", "x").split("x")]
  if parts and all(p.isdigit() and int(p) > 0 for p in parts):
    return tuple(int(p) for p in parts)
  if parts and all(p.isidentifier() for p in parts):
    return tuple(parts)
  raise UsageError(f"Invalid shape {text!r}: expected positive integers (3x4, 12) or symbolic "
                   "dimension names (N,D or N).")


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
  """Writes the container atomically; returns its size in bytes."""
  payload = bytes(exported.serialize())
  header = json.dumps({**metadata, "platforms": list(exported.platforms),
                       "payload_bytes": len(payload),
                       "sha256": hashlib.sha256(payload).hexdigest()}).encode()
  blob = MAGIC + _HEADER_LENGTH.pack(len(header)) + header + payload
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
  with os.fdopen(fd, "wb") as f:
    f.write(blob)
  os.replace(tmp, path)
  return len(blob)


def read_artifact(path: str) -> tuple[export.Exported, dict[str, Any]]:
  """Reads and validates a container written by `write_artifact`.

  Raises:
    UsageError: the file is missing, empty, not a funcgrad export, truncated, corrupted, or not
      deserialisable; the message names the file and what is wrong.
  """
  try:
    with open(path, "rb") as f:
      blob = f.read()
  except OSError as e:
    raise UsageError(f"Cannot read {path!r}: {e.strerror}.") from None
  if not blob:
    raise UsageError(f"{path!r} is empty, not a funcgrad export file.")
  if not blob.startswith(MAGIC):
    raise UsageError(f"{path!r} is not a funcgrad export file (it does not start with "
                     f"{MAGIC.strip().decode()!r}); write one with experiments.export_graph.")
  start = len(MAGIC) + _HEADER_LENGTH.size
  if len(blob) < start:
    raise UsageError(f"{path!r} is truncated: its header is incomplete.")
  (header_length,) = _HEADER_LENGTH.unpack_from(blob, len(MAGIC))
  try:
    header = json.loads(blob[start:start + header_length])
  except (UnicodeDecodeError, json.JSONDecodeError):
    raise UsageError(f"{path!r} is truncated or corrupted: its header is not valid JSON.") from None
  payload = blob[start + header_length:]
  if len(payload) != header.get("payload_bytes"):
    raise UsageError(f"{path!r} is truncated or padded: the graph should be "
                     f"{header.get('payload_bytes')} bytes, the file holds {len(payload)}.")
  if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
    raise UsageError(f"{path!r} is corrupted: its SHA-256 does not match the one recorded.")
  try:
    exported = export.deserialize(bytearray(payload))
  except Exception as e:  # noqa: BLE001 - any deserialiser failure is a bad file to the user.
    raise UsageError(f"{path!r} could not be deserialised by this JAX ({jax.__version__}): "
                     f"{type(e).__name__}: {e}") from None
  return exported, header


def check_platform(exported: export.Exported) -> None:
  """Raises ValueError unless `exported` was lowered for the default backend."""
  backend = jax.default_backend()
  accepted = _EXPORT_PLATFORMS.get(backend, (backend,))
  if not set(accepted) & set(exported.platforms):
    raise UsageError(f"This graph was exported for {', '.join(exported.platforms)} but this "
                     f"process runs on {backend}; export it with --platforms including "
                     f"{accepted[0]}.")


def check_inputs(exported: export.Exported, arrays: Sequence[np.ndarray]) -> None:
  """Raises ValueError if the arrays do not fit the exported input shapes and dtypes."""
  if len(arrays) != len(exported.in_avals):
    raise UsageError(f"The graph takes {len(exported.in_avals)} inputs, got {len(arrays)}.")
  for i, (array, aval) in enumerate(zip(arrays, exported.in_avals, strict=True)):
    expected = "x".join(str(d) for d in aval.shape)
    if array.dtype != aval.dtype:
      raise UsageError(f"Input {i} has dtype {array.dtype}; the graph takes {aval.dtype}.")
    if array.ndim != len(aval.shape) or any(
        isinstance(d, int) and d != n for d, n in zip(aval.shape, array.shape, strict=True)):
      raise UsageError(f"Input {i} has shape {'x'.join(map(str, array.shape)) or 'scalar'}; the "
                       f"graph takes {expected} (symbolic dimensions take any size).")
