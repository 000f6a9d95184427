"""Loading InsightFace `.bin` pickles without trusting them: plain data only, linear in size.

A pickle calls whatever its globals name while it loads. Refusing every
global outside a short list is not enough: an allowed constructor can still be
asked for a huge object (`bytes(10**12)`), or be chained so that each call
doubles its input (`_codecs.encode(x, "hex")` forty times turns a 600-byte file
into terabytes), and numpy's own unpickling trusts its state (an object array
whose length disagrees with its list crashes the interpreter).

So no allowed global is the real constructor. Each is a small function that
accepts only what plain protocol 0-5 pickles of bytes, bool lists and numpy
arrays of numbers contain, and builds something no larger than the bytes the
file holds for it. numpy arrays and dtypes are built by this module from a
checked state, never by numpy's `__setstate__`.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from swinface.data.formats.base import DatasetError

# The dtypes a verification file may use: numbers and bools, never objects or records.
_PLAIN_KINDS = frozenset("biufc")
_LATIN1 = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})
_MAX_DEPTH = 8  # (bins, issame) needs 3 levels; deeper nesting is refused


class UnsafePickleError(DatasetError):
    """A pickle that asks for something a verification file never needs (code, or a bomb)."""


class _Refused(Exception):
    """Raised inside a constructor; the loader turns it into an `UnsafePickleError`."""


def _text(value: Any) -> str:
    """A str from a Python 3 str or a Python 2 str loaded as bytes."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    raise _Refused(f"expected a string, got {type(value).__name__}")


def _encode(obj: Any = "", encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """`_codecs.encode` as protocol 2 uses it for bytes: a latin-1 str, one byte per character."""
    if not isinstance(obj, str) or _text(encoding).lower() not in _LATIN1:
        raise _Refused(
            f"_codecs.encode of a {type(obj).__name__} with codec {encoding!r}: only "
            "latin-1 encoding of a str (how protocol 2 stores bytes) is allowed"
        )
    return obj.encode("latin-1")


def _byte_string(kind: type, args: tuple[Any, ...]) -> bytes | bytearray:
    if not args:
        return kind()
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return kind(args[0])
    if len(args) == 2 and isinstance(args[0], str):
        return kind(_encode(args[0], args[1]))
    raise _Refused(
        f"{kind.__name__}({', '.join(type(a).__name__ for a in args)}): only bytes "
        "or a latin-1 str are allowed (an integer would ask for that many bytes)"
    )


def _bytes(*args: Any) -> bytes:
    return bytes(_byte_string(bytes, args))


def _bytearray(*args: Any) -> bytearray:
    return bytearray(_byte_string(bytearray, args))


class _DtypeState:
    """A numpy dtype named in the pickle; checked and built when its state is set."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        try:
            self.dtype = np.dtype(_text(spec))
        except TypeError as err:
            raise _Refused(f"unknown dtype {spec!r}") from err
        if self.dtype.kind not in _PLAIN_KINDS or self.dtype.hasobject:
            raise _Refused(f"dtype {self.dtype} is not a plain number or bool type")

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2:
            raise _Refused("malformed dtype state")
        if any(part is not None for part in state[2:5]):
            raise _Refused("structured or subarray dtypes are not allowed")
        order = _text(state[1])
        if order not in "<>=|":
            raise _Refused(f"unknown byte order {order!r}")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _dtype_of(value: Any) -> np.dtype:
    if isinstance(value, _DtypeState):
        return value.dtype
    raise _Refused(f"expected a dtype, got {type(value).__name__}")


class _NdarrayType:
    """Stands for `numpy.ndarray` as the pickle names it; only `_reconstruct` accepts it."""

    def __reduce__(self) -> Any:  # never pickled; present so it is plainly not a class
        raise TypeError


_NDARRAY = _NdarrayType()


class _ArrayState:
    """An ndarray under construction: numpy's pickles make an empty one and then set its state."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, raw bytes); the version is left out by old numpy
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed ndarray state")
        shape, dtype, fortran, raw = state[-4:]
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise _Refused(f"malformed ndarray shape {shape!r}")
        dtype = _dtype_of(dtype)
        if not isinstance(raw, bytes | bytearray):
            raise _Refused("ndarray data is not a byte string")
        if len(raw) != math.prod(shape) * dtype.itemsize:  # also stops huge shapes
            raise _Refused(
                f"ndarray of shape {shape} and {dtype} does not match its {len(raw)} bytes"
            )
        flat = np.frombuffer(bytes(raw), dtype=dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArrayState:
    if subtype is not _NDARRAY or shape != (0,):
        raise _Refused("_reconstruct is only allowed as numpy pickles an ndarray")
    return _ArrayState()


def _scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _dtype_of(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused(f"a {dtype} scalar needs {dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    state = _ArrayState()
    state.__setstate__((shape, dtype, _text(order) == "F", buffer))
    assert state.array is not None
    return state.array


# (module, name) as pickles write them -> the checked stand-in.
# numpy 2 moved `numpy.core` to `numpy._core`; files written under either name load.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _encode,
    ("builtins", "bytes"): _bytes,
    ("__builtin__", "bytes"): _bytes,
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeState,
    **{
        (module, name): fn
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name, fn in (("_reconstruct", _reconstruct), ("scalar", _scalar))
    },
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds bytes, lists, bools and numpy arrays of numbers, and nothing else.

    Every global outside a short list is refused before it is imported; the
    allowed ones are checked stand-ins (see the module docstring). `load()`
    returns plain Python and numpy objects.
    """

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                self.source, f"refusing to unpickle {module}.{name}: not plain data"
            )
        return allowed

    def load(self) -> Any:
        try:
            return _resolve(super().load(), {}, 0)
        except _Refused as err:
            raise UnsafePickleError(self.source, f"refusing to unpickle: {err}") from None


def _resolve(value: Any, seen: dict[int, Any], depth: int) -> Any:
    """Arrays in place of their stand-ins; shared objects stay shared (no copy per reference)."""
    if isinstance(value, _ArrayState):
        if value.array is None:
            raise _Refused("an ndarray without its data")
        return value.array
    if isinstance(value, _DtypeState):
        return value.dtype
    if isinstance(value, _NdarrayType):
        raise _Refused("numpy.ndarray outside an array")
    if not isinstance(value, list | tuple | dict):
        return value
    if id(value) in seen:
        return seen[id(value)]
    if depth >= _MAX_DEPTH:
        raise _Refused(f"containers nested more than {_MAX_DEPTH} deep")
    if isinstance(value, dict):
        out: Any = {k: _resolve(v, seen, depth + 1) for k, v in value.items()}
    else:
        out = type(value)(_resolve(v, seen, depth + 1) for v in value)
    seen[id(value)] = out
    return out


def _check_lengths(data: bytes) -> None:
    """Walk the opcodes without running them: every length a string declares must be there.

    The unpickler allocates a counted string's declared size before reading it,
    so a 20-byte file declaring 2**60 bytes would ask for that much memory.
    `pickletools` reads only what is present and raises on a short string.
    """
    for _ in pickletools.genops(data):
        pass


def load_restricted_pickle(path: str | Path) -> Any:
    """Unpickle `path` allowing only plain data (see `RestrictedUnpickler`)."""
    try:
        data = Path(path).read_bytes()
        _check_lengths(data)
        return RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # a truncated or foreign file: say which one
        raise DatasetError(str(path), f"not a readable pickle: {err}") from err
