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

__all__ = ["make_converter", "register", "structure", "camel_renames", "note_model", "unstructure", "restructure"]

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

    # Values of exactly these types come back unchanged: the generated model hooks
    # (_fast_structure_fn) skip the call for them.
    structure_union.exact_types = frozenset(args)  # type: ignore[attr-defined]
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
    note_model(converter, cls, renames)
    overrides = {name: override(rename=key) for name, key in (renames or {}).items()}
    fn: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False, **overrides)  # type: ignore[arg-type]

    def detailed(v: Any, t: Any) -> Any:
        if not isinstance(v, dict):
            raise TypeError(f"expected an object, got {_type_name(v)} {v!r:.40}")
        return fn(v, t)

    converter.register_structure_hook(cls, _fast_structure_fn(converter, cls, renames or {}, detailed))


def _fast_structure_fn(
    converter: cattrs.Converter, cls: type, renames: Mapping[str, str], detailed: Callable[[Any, Any], Any]
) -> Callable[[Any, Any], Any]:
    """Generate ``cls``'s hot-path structure function (source code, compiled once, like cattrs').

    cattrs' generated function calls a hook for every field; this one calls none for a value
    whose exact type the field's strict hook would return unchanged, the common case::

        def structure(o, t):
            try:
                if _type(o) is not dict: return _detailed(o, t)
                get = o.get
                v0 = get('id', _M)
                if v0 is _M: v0 = _d0
                elif _type(v0) not in _e0: v0 = _h0(v0, _t0)     # _e0 = {int, NoneType}
                ...
                return _cls(v0, ...)
            except Exception:
                return _detailed(o, t)

    Anything unusual (a value to convert, a bad value, a missing required field) goes to the
    field's hook or to cattrs' ``detailed`` function, so results and error messages (with the
    path of the bad field) are exactly cattrs'.  Hooks a vendor module registers itself are
    always called.
    """
    try:
        return _generate(converter, cls, renames, detailed)
    except Exception:  # pragma: no cover - a model this generator does not understand
        return detailed


#: The strict hooks that return a value of their exact type unchanged.
_PASS_THROUGH: dict[Any, type] = {_strict_str: str, _strict_int: int, _strict_float: float, _strict_bool: bool}

_MISSING = object()


def _is_optional(t: Any) -> bool:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    return (origin is Union or origin is types.UnionType) and len(args) == 2 and type(None) in args


def _generate(
    converter: cattrs.Converter, cls: type, renames: Mapping[str, str], detailed: Callable[[Any, Any], Any]
) -> Callable[[Any, Any], Any]:
    hints = typing.get_type_hints(cls)
    ns: dict[str, Any] = {"_cls": cls, "_detailed": detailed, "_M": _MISSING, "_type": type}
    body = []
    args = []
    for i, a in enumerate(attrs.fields(cls)):
        if not a.init:
            continue
        t = hints.get(a.name, Any)
        hook = converter.get_structure_hook(t)
        exact: frozenset[Any] | None  # types passed through unchanged; None: any value is
        if _PASS_THROUGH.get(hook) is t:
            exact = frozenset((t,))
        elif hasattr(hook, "exact_types"):
            exact = hook.exact_types
        elif hook is _any:
            exact = None
        elif _is_optional(t) and getattr(hook, "__func__", None) is cattrs.Converter._structure_optional:
            # ``Model | None``: None passes; anything else goes straight to the model's hook.
            t = next(x for x in typing.get_args(t) if x is not type(None))
            hook = converter.get_structure_hook(t)
            exact = frozenset((type(None),))
        else:
            exact = frozenset()
        ns[f"_h{i}"], ns[f"_t{i}"], ns[f"_e{i}"] = hook, t, exact
        if a.default is attrs.NOTHING:
            missing = "return _detailed(o, t)"  # a required field is absent: cattrs reports it
        elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
            if a.default.takes_self:  # type: ignore[union-attr]
                raise TypeError("Factory(takes_self=True) is left to cattrs")
            ns[f"_d{i}"] = a.default.factory  # type: ignore[union-attr]
            missing = f"v{i} = _d{i}()"
        else:
            ns[f"_d{i}"] = a.default
            missing = f"v{i} = _d{i}"
        body.append(f"        v{i} = get({renames.get(a.name, a.name)!r}, _M)")
        body.append(f"        if v{i} is _M: {missing}")
        if exact:
            body.append(f"        elif _type(v{i}) not in _e{i}: v{i} = _h{i}(v{i}, _t{i})")
        elif exact is not None:
            body.append(f"        else: v{i} = _h{i}(v{i}, _t{i})")
        args.append(f"{a.alias}=v{i}" if a.kw_only else f"v{i}")
    src = "\n".join(
        [
            "def structure(o, t):",
            "    try:",
            "        if _type(o) is not dict: return _detailed(o, t)",
            "        get = o.get",
            *body,
            f"        return _cls({', '.join(args)})",
            "    except Exception:",
            "        return _detailed(o, t)",
        ]
    )
    exec(compile(src, f"<realtime_sync structure {cls.__qualname__}>", "exec"), ns)
    return ns["structure"]  # type: ignore[no-any-return]


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


# -- the way back: model -> JSON (for Event.to_dict / Event.from_dict) ---------------------------

#: Every model a vendor module registered: its converter and its attribute -> wire-key renames.
_MODELS: dict[type, tuple[cattrs.Converter, Mapping[str, str]]] = {}


def note_model(converter: cattrs.Converter, cls: type, renames: Mapping[str, str] | None = None) -> None:
    """Remember that ``converter`` structures ``cls`` from wire keys renamed by ``renames``
    (:func:`register` does it; a vendor module with its own hook calls it directly)."""
    _MODELS[cls] = (converter, dict(renames or {}))


def unstructure(value: Any) -> Any:
    """``value`` as the JSON a server would send: models become dicts keyed by their wire names,
    tuples lists; :func:`restructure` reads it back into the same model.

    >>> from realtime_sync.models.genesys import Participant
    >>> unstructure(Participant(nickname="Ann", participant_id="p1"))
    {'nickname': 'Ann', 'type': None, 'participantId': 'p1'}
    """
    cls = type(value)
    if value is None or cls in _PRIMS:
        return value
    if attrs.has(cls):
        renames = _MODELS.get(cls, (None, {}))[1]
        return {renames.get(a.name, a.name): unstructure(getattr(value, a.name)) for a in attrs.fields(cls)}
    if isinstance(value, Mapping):
        return {str(k): unstructure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unstructure(v) for v in value]
    return value


def restructure(data: Any, cls: type[T]) -> T:
    """Read what :func:`unstructure` gave back into ``cls`` (a registered model, or an attrs class
    whose fields are registered models or plain values); :class:`ProtocolError` if it does not fit."""
    entry = _MODELS.get(cls)
    if entry is not None:
        return structure(entry[0], data, cls)
    if not attrs.has(cls) or not isinstance(data, dict):
        raise ProtocolError(f"{cls.__name__}: cannot rebuild from {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for a in attrs.fields(cls):
        if a.name not in data or not a.init:
            continue
        v = data[a.name]
        models = [t for t in (hints.get(a.name), *typing.get_args(hints.get(a.name))) if t in _MODELS]
        kwargs[a.alias or a.name] = restructure(v, models[0]) if models and v is not None else v
    try:
        return typing.cast(T, cls(**kwargs))
    except TypeError as exc:
        raise ProtocolError(f"{cls.__name__}: {exc}") from exc
