"""The data format across the trust boundary: JSON values with tensors as raw bytes; never pickle, never code.

The grader (trusted) encodes the inputs of the hidden tests with :func:`encode`; the student process
(untrusted, ``student.py``) decodes them, calls the student's function and encodes what it returned;
the grader decodes that with :func:`decode` into plain Python values and plain ``torch.Tensor`` (never a
subclass, never an object with methods of the student's) before comparing. An encoded value is one of::

    null | bool | int | float | str | [value, ...]          JSON itself (a JSON list is a Python list)
    {"tuple": [value, ...]}
    {"dict": [[key, value], ...]}
    {"tensor": [dtype name, shape, base64 of the raw little-endian bytes]}
    {"generator": seed}                                      a fresh torch.Generator seeded with seed
    {"build": [factory, seed, args, kwargs, state]}          an object built by an importable factory
                                                             ("module:qualname") after torch.manual_seed(seed),
                                                             then given the weights ``state`` (a dict value)
    {"opaque": type name}                                    a value with no encoding (outputs only)

``generator`` and ``build`` are allowed in inputs only (``decode(..., inputs=True)``): an output that
holds one is refused.
"""
from __future__ import annotations

import base64
import importlib
import math
from typing import Any

import torch

__all__ = ["DTYPES", "MAX_DIMS", "MAX_DEPTH", "WireError", "Opaque", "Generator", "Build", "encode", "decode",
           "resolve"]

DTYPES: dict[str, torch.dtype] = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}
MAX_DIMS = 16
MAX_DEPTH = 32
_TAGS = {"tuple", "dict", "tensor", "generator", "build", "opaque"}
_FACTORY_ROOTS = ("course_utils", "course_tools", "torch")


class WireError(ValueError):
    """A value that cannot be encoded, or an encoded value that is malformed."""


class Opaque:
    """Stands for a returned value that has no encoding (a module, a numpy array...): equal to nothing."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name}>"

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


class Generator:
    """Hidden-test input: a fresh ``torch.Generator`` seeded with ``seed`` for every call (student and reference)."""

    def __init__(self, seed: int):
        self.seed = int(seed)


class Build:
    """Hidden-test input: an object made by ``factory(*args, **kwargs)`` after ``torch.manual_seed(seed)``.

    ``factory`` must be importable from ``course_utils``, ``course_tools`` or ``torch`` (the student
    process imports it from the installed course). A ``torch.nn.Module`` is sent with its weights, so
    both sides hold the same parameters whatever the seed.
    """

    def __init__(self, factory: Any, *args: Any, seed: int | None = None, **kwargs: Any):
        self.factory, self.args, self.kwargs, self.seed = factory, args, kwargs, seed

    def make(self) -> Any:
        """Build the object (trusted side, once, to read its weights)."""
        if self.seed is not None:
            torch.manual_seed(self.seed)
        return self.factory(*self.args, **self.kwargs)


def _name_of(factory: Any) -> str:
    name = f"{factory.__module__}:{factory.__qualname__}"
    if resolve(name) is not factory:
        raise WireError(f"Build: {name} is not importable by that name (define it in a course module)")
    return name


def resolve(name: str) -> Any:
    """The object named ``"module:qualname"``, from ``course_utils``, ``course_tools`` or ``torch`` only."""
    module, _, qualname = str(name).partition(":")
    if module.split(".")[0] not in _FACTORY_ROOTS or not qualname:
        raise WireError(f"cannot build {name!r}: factories come from {', '.join(_FACTORY_ROOTS)}")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _tensor(t: torch.Tensor) -> dict:
    t = torch.Tensor.as_subclass(t, torch.Tensor).detach().to("cpu").contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name not in DTYPES or t.layout != torch.strided or t.dim() > MAX_DIMS:
        raise WireError(f"tensor of dtype {name}, layout {t.layout}, {t.dim()} dims")
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return {"tensor": [name, list(t.shape), base64.b64encode(raw).decode("ascii")]}


def encode(value: Any, opaque: bool = False, _depth: int = 0) -> Any:
    """The encoded form of ``value``; with ``opaque`` a value without encoding becomes ``{"opaque": type}``.

    Without ``opaque`` (the grader encoding inputs) such a value raises :class:`WireError`.
    """
    if _depth > MAX_DEPTH:
        raise WireError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        if value is None:
            return None
        for kind in (bool, int, float, str):  # subclasses (numpy.float64...) become the plain type
            if isinstance(value, kind):
                return kind(value)  # NaN and infinities too: Python's json writes and reads them
        if isinstance(value, torch.Tensor):
            return _tensor(value)
        if type(value) in (list, tuple):
            items = [encode(v, opaque, _depth + 1) for v in value]
            return items if type(value) is list else {"tuple": items}
        if type(value) is dict:
            return {"dict": [[encode(k, opaque, _depth + 1), encode(v, opaque, _depth + 1)] for k, v in value.items()]}
        if isinstance(value, Generator):
            return {"generator": value.seed}
        if isinstance(value, Build):
            obj = value.make()
            state = obj.state_dict() if isinstance(obj, torch.nn.Module) else None
            return {"build": [_name_of(value.factory), value.seed, encode(list(value.args), opaque, _depth + 1),
                              encode(dict(value.kwargs), opaque, _depth + 1),
                              None if state is None else encode(dict(state), opaque, _depth + 1)]}
        raise WireError(f"no encoding for a {type(value).__module__}.{type(value).__qualname__}")
    except WireError:
        if not opaque:
            raise
        return {"opaque": f"{type(value).__module__}.{type(value).__qualname__}"[:80]}
    except Exception as e:  # a student's object whose methods raise while being read
        if not opaque:
            raise WireError(f"could not encode a {type(value).__qualname__}: {e}") from None
        return {"opaque": f"{type(value).__module__}.{type(value).__qualname__}"[:80]}


def _decode_tensor(spec: Any) -> torch.Tensor:
    if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], list)
            and isinstance(spec[2], str)):
        raise WireError("malformed tensor")
    dtype = DTYPES.get(spec[0])
    shape = spec[1]
    if dtype is None or len(shape) > MAX_DIMS or not all(type(n) is int and 0 <= n < 2**40 for n in shape):
        raise WireError(f"tensor with dtype {spec[0]!r:.30} and shape {shape!r:.60}")
    try:
        raw = base64.b64decode(spec[2].encode("ascii"), validate=True)
    except ValueError:
        raise WireError("tensor bytes are not base64") from None
    numel = math.prod(shape)
    if len(raw) != numel * dtype.itemsize:
        raise WireError(f"tensor of shape {tuple(shape)} needs {numel * dtype.itemsize} bytes, got {len(raw)}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def decode(value: Any, inputs: bool = False, _depth: int = 0) -> Any:
    """The Python value of an encoded ``value`` (parsed JSON); :class:`WireError` if it is malformed.

    ``inputs`` allows ``generator`` and ``build`` (which run course code); outputs of a student never do.
    """
    if _depth > MAX_DEPTH:
        raise WireError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [decode(v, inputs, _depth + 1) for v in value]
    if type(value) is not dict or len(value) != 1 or next(iter(value)) not in _TAGS:
        raise WireError(f"unknown encoded value {str(value)[:60]!r}")
    tag, body = next(iter(value.items()))
    if tag == "tensor":
        return _decode_tensor(body)
    if tag == "tuple" and type(body) is list:
        return tuple(decode(v, inputs, _depth + 1) for v in body)
    if tag == "dict" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
        pairs = [(decode(k, inputs, _depth + 1), decode(v, inputs, _depth + 1)) for k, v in body]
        if not all(k is None or type(k) in (bool, int, float, str) for k, _ in pairs):
            raise WireError("dict keys must be numbers or strings")
        return dict(pairs)
    if tag == "opaque" and type(body) is str:
        name = "".join(c if c.isalnum() or c in "._" else "_" for c in body)[:80] or "object"
        return type(name, (Opaque,), {})(name)   # named after the type, for compare()'s messages
    if tag == "generator" and inputs and type(body) is int:
        return torch.Generator(device="cpu").manual_seed(body)
    if tag == "build" and inputs and type(body) is list and len(body) == 5:
        factory, seed, args, kwargs, state = body
        if seed is not None:
            torch.manual_seed(seed)
        obj = resolve(factory)(*decode(args, True, _depth + 1), **decode(kwargs, True, _depth + 1))
        if state is not None:
            obj.load_state_dict(decode(state, True, _depth + 1))
        return obj
    raise WireError(f"malformed or unexpected {tag!r} value")
