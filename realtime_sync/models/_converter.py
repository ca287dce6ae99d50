"""The shared base of the per-vendor cattrs converters.

Each vendor module builds its own private converter with :func:`make_converter` and registers
its models with :func:`register` when the module is imported, so hooks are generated up front
(the first structure of a class costs ~1 ms; afterwards a few microseconds).

The converter is *strict* about primitive types, unlike cattrs' default which coerces
(``"false"`` would become ``True``, ``"12"`` would become ``12``): a wrong type is a bad frame and
becomes an ``error`` event, never a silently wrong value.  Missing fields take their defaults
(every model field has one) and unknown fields are ignored, so the vendors may add or drop
fields without breaking decoding; the whole decoded frame stays in ``event.raw``.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Callable, Mapping, TypeVar, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ..exceptions import ProtocolError

__all__ = ["make_converter", "register", "structure", "camel_renames"]

T = TypeVar("T")

_PRIMS = (str, int, float, bool, type(None))


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _strict_str(v: Any, _t: Any) -> str:
    if isinstance(v, str):
        return v
    raise TypeError(f"expected a string, got {_type_name(v)} {v!r:.40}")


def _strict_int(v: Any, _t: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TypeError(f"expected an integer, got {_type_name(v)} {v!r:.40}")


def _strict_float(v: Any, _t: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise TypeError(f"expected a number, got {_type_name(v)} {v!r:.40}")


def _strict_bool(v: Any, _t: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise TypeError(f"expected a boolean, got {_type_name(v)} {v!r:.40}")


def _any(v: Any, _t: Any) -> Any:
    return v


def _is_primitive_union(t: Any) -> bool:
    origin = typing.get_origin(t)
    if origin is Union or origin is types.UnionType:
        return all(a in _PRIMS for a in typing.get_args(t))
    return False


def _primitive_union_factory(t: Any) -> Callable[[Any, Any], Any]:
    """Build the hook for one ``int | str | None``-style union once (not per value)."""
    args = typing.get_args(t)
    allow_none = type(None) in args
    allow_bool = bool in args
    allow_int = int in args
    allow_float = float in args
    allow_str = str in args
    names = " or ".join("null" if a is type(None) else a.__name__ for a in args)

    def structure_union(v: Any, _t: Any) -> Any:
        if v is None:
            if allow_none:
                return None
        elif isinstance(v, bool):
            if allow_bool:
                return v
        elif isinstance(v, int):
            if allow_int:
                return v
            if allow_float:
                return float(v)
        elif isinstance(v, float):
            if allow_float:
                return v
        elif isinstance(v, str):
            if allow_str:
                return v
        raise TypeError(f"expected {names}, got {_type_name(v)} {v!r:.40}")

    return structure_union


def _is_mapping(t: Any) -> bool:
    origin = typing.get_origin(t)
    return t in (dict, Mapping) or origin in (dict, Mapping, typing.Mapping, __import__("collections.abc").abc.Mapping)


def _mapping(v: Any, t: Any) -> Any:
    if isinstance(v, dict):
        return v  # values kept as decoded; a model that needs typed values declares them
    raise TypeError(f"expected an object, got {_type_name(v)} {v!r:.40}")


def _is_tuple(t: Any) -> bool:
    return typing.get_origin(t) is tuple


def make_converter() -> cattrs.Converter:
    """A cattrs converter with strict primitive hooks registered before anything else."""
    c = cattrs.Converter(detailed_validation=True)
    c.register_structure_hook(str, _strict_str)
    c.register_structure_hook(int, _strict_int)
    c.register_structure_hook(float, _strict_float)
    c.register_structure_hook(bool, _strict_bool)
    c.register_structure_hook(Any, _any)
    c.register_structure_hook_factory(_is_primitive_union, _primitive_union_factory)
    c.register_structure_hook_func(_is_mapping, _mapping)

    def _tuple_factory(t: Any) -> Callable[[Any, Any], Any]:
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            hook = c.get_structure_hook(item)

            def structure_tuple(v: Any, _t: Any) -> tuple[Any, ...]:
                if not isinstance(v, list):
                    raise TypeError(f"expected a list, got {_type_name(v)} {v!r:.40}")
                return tuple(hook(x, item) for x in v)

            return structure_tuple
        return c.gen_structure_heterogenous_tuple(t) if hasattr(c, "gen_structure_heterogenous_tuple") else _any  # type: ignore[attr-defined]

    c.register_structure_hook_factory(_is_tuple, _tuple_factory)
    return c


def camel_renames(cls: type) -> dict[str, str]:
    """``{"participant_id": "participantId", ...}`` for every snake_case field of ``cls``."""
    out = {}
    for a in attrs.fields(cls):
        head, *rest = a.name.split("_")
        camel = head + "".join(p[:1].upper() + p[1:] for p in rest)
        if camel != a.name:
            out[a.name] = camel
    return out


def register(converter: cattrs.Converter, cls: type, renames: Mapping[str, str] | None = None) -> None:
    """Generate and register ``cls``'s structure hook now (not on the first message).

    ``renames`` maps attribute names to wire keys.  Nested model classes must be registered
    before the classes that contain them.
    """
    overrides = {name: override(rename=key) for name, key in (renames or {}).items()}
    fn: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False, **overrides)  # type: ignore[arg-type]

    def hook(v: Any, t: Any) -> Any:
        if not isinstance(v, dict):
            raise TypeError(f"expected an object, got {_type_name(v)} {v!r:.40}")
        return fn(v, t)

    converter.register_structure_hook(cls, hook)


def structure(converter: cattrs.Converter, data: Any, cls: type[T]) -> T:
    """Structure ``data`` as ``cls``; any failure becomes a :class:`ProtocolError` naming the path."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises ClassValidationError / ExceptionGroups
        try:
            details = "; ".join(cattrs.transform_error(exc, path=cls.__name__))
        except Exception:  # pragma: no cover - defensive
            details = str(exc)
        raise ProtocolError(f"{cls.__name__}: {details}") from exc
