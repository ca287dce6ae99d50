"""The shared base of the per-vendor cattrs converters, and the one decoding policy.

Each vendor module builds its own private converter with :func:`make_converter` and registers
its models with :func:`register` when the module is imported, so hooks are generated up front
(the first structure of a class costs ~1 ms; afterwards a few microseconds).

Decoding policy (every vendor, every model)
-------------------------------------------
Real servers are looser than their documents: Chatwoot passes form parameters through
(``"is_private": "true"``), puts ``null`` into lists (an attachment of unknown type), mixes
unix ints, floats (``updated_at.to_f``) and ISO strings in timestamps; GWS sends ``null`` or
omits a field depending on the version.  So:

1. **Read the spellings real servers send, into the right value** (never cattrs' coercion,
   which turns ``"false"`` into ``True`` and ``1.9`` into ``1``):

   ===========  =================================================================================
   field type   accepted
   ===========  =================================================================================
   ``bool``     ``true``/``false``; the strings ``"true"``/``"false"``, ``"t"``/``"f"``,
                ``"1"``/``"0"``, ``"on"``/``"off"`` (any case, as Rails' boolean cast); 0 and 1
   ``int``      integers; integral floats (``12.0``); decimal strings (``"12"``, ``" -3 "``)
   ``float``    numbers; decimal strings (``"1.5"``); never NaN or infinities from a string
   ``str``      strings; integers (``12`` -> ``"12"``: an id the server sent as a number)
   timestamps   kept exactly as sent (``int | float | str | None``); :func:`as_datetime` reads them
   lists        ``null`` -> empty; ``null`` items are skipped (``[null, {...}]`` -> one item)
   objects      ``null`` -> empty mapping
   ===========  =================================================================================

   Anything else (``"yes please"`` for a bool, ``1.5`` for an int, an object for a string) is a
   mismatch, never a guess.
2. **A payload that still does not fit its model is delivered anyway** (:func:`decode`): the
   model with every field that fits typed and the others at their defaults (recursively), or
   the decoded JSON value when it is not even an object, with the mismatch in
   ``event.decode_error``; and the adapter reports an ``error`` event of kind ``"decode"``
   naming the bad fields.  Never a silently wrong value, never a lost event.
3. Missing fields take their defaults (every model field has one) and unknown fields are
   ignored; the whole decoded frame stays in ``event.raw``.

>>> import attrs
>>> @attrs.frozen
... class Sample:
...     id: int | None = None
...     private: bool | None = None
...     tags: tuple[str, ...] = ()
>>> c = make_converter(); register(c, Sample)
>>> decode(c, {"id": "12", "private": "false", "tags": ["a", None]}, Sample)
(Sample(id=12, private=False, tags=('a',)), None)
>>> decode(c, {"id": 1.5, "private": "true"}, Sample)
(Sample(id=None, private=True, tags=()), 'Sample.id: expected int or null, got float 1.5')
"""

from __future__ import annotations

import builtins
import re
import types
import typing
from typing import Any, Callable, Mapping, TypeVar, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.v import format_exception

from .._build import twin
from .._redact import model_repr
from .._validate import flag
from ..exceptions import ProtocolError

__all__ = [
    "camel_renames",
    "decode",
    "make_converter",
    "note_model",
    "read_bool",
    "read_float",
    "read_int",
    "read_str",
    "register",
    "restructure",
    "structure",
    "unstructure",
]

T = TypeVar("T")

_PRIMS = (str, int, float, bool, type(None))


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


_INT_RE = re.compile(r"\s*[+-]?\d{1,40}\s*")
_FLOAT_RE = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def read_str(v: Any, _t: Any = str) -> str:
    """A string; an integer id sent as a number reads as its decimal string.

    >>> read_str("a"), read_str(12)
    ('a', '12')
    """
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise TypeError(f"expected a string, got {_type_name(v)} {v!r:.40}")


def read_int(v: Any, _t: Any = int) -> int:
    """An integer; ``12.0`` and ``"12"`` read as 12, ``1.5`` and ``"1.5"`` do not.

    >>> read_int(12), read_int(12.0), read_int(" 12 ")
    (12, 12, 12)
    """
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:
        return int(v)
    if isinstance(v, str) and _INT_RE.fullmatch(v):
        return int(v)
    raise TypeError(f"expected an integer, got {_type_name(v)} {v!r:.40}")


def read_float(v: Any, _t: Any = float) -> float:
    """A number as a float; decimal strings too (``"1.5"``), never ``"nan"`` or ``"inf"``.

    >>> read_float(2), read_float("1.5")
    (2.0, 1.5)
    """
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and _FLOAT_RE.fullmatch(v):
        return float(v)
    raise TypeError(f"expected a number, got {_type_name(v)} {v!r:.40}")


def read_bool(v: Any, _t: Any = bool) -> bool:
    """A boolean; the strings Rails casts (``"true"``, ``"f"``, ``"1"``, ``"off"``...) and 0/1 too.

    >>> read_bool("false"), read_bool("TRUE"), read_bool(1)
    (False, True, True)
    """
    read = flag(v, "")  # the spellings settings give too (verify="false"): one reading of them
    if read is not None:
        return read
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise TypeError(f"expected a boolean, got {_type_name(v)} {v!r:.40}")


# Kept for the fast-path generator's table (and older imports).
_strict_str, _strict_int, _strict_float, _strict_bool = read_str, read_int, read_float, read_bool


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
    exact_types = frozenset(args)
    names = " or ".join("null" if a is type(None) else a.__name__ for a in args)
    # Conversions tried in the declared order when the value's own type is not a member:
    # ``int | None`` reads "12" as 12, ``bool | None`` reads "false" as False.
    readers = tuple(_READERS[a] for a in args if a in _READERS)
    allow_float = float in args

    def structure_union(v: Any, _t: Any) -> Any:
        tv = type(v)
        if tv in exact_types:
            return v
        if v is None:
            raise TypeError(f"expected {names}, got null")
        if tv is int and allow_float:
            return float(v)
        for read in readers:
            try:
                return read(v)
            except TypeError:
                pass
        raise TypeError(f"expected {names}, got {_type_name(v)} {v!r:.40}")

    del allow_none
    # Values of exactly these types come back unchanged: the generated model hooks
    # (_fast_structure_fn) skip the call for them.
    structure_union.exact_types = frozenset(args)  # type: ignore[attr-defined]
    return structure_union


_READERS: dict[Any, Callable[[Any], Any]] = {bool: read_bool, int: read_int, float: read_float, str: read_str}


def _is_mapping(t: Any) -> bool:
    origin = typing.get_origin(t)
    return t in (dict, Mapping) or origin in (dict, Mapping, typing.Mapping, __import__("collections.abc").abc.Mapping)


def _mapping(v: Any, t: Any) -> Any:
    if isinstance(v, dict):
        return v  # values kept as decoded; a model that needs typed values declares them
    if v is None:
        return {}  # GWS and Chatwoot send null where a version omits the object
    raise TypeError(f"expected an object, got {_type_name(v)} {v!r:.40}")


_mapping.exact_types = frozenset((dict,))  # type: ignore[attr-defined]  # a dict comes back as is


def _is_tuple(t: Any) -> bool:
    return typing.get_origin(t) is tuple


def make_converter() -> cattrs.Converter:
    """A cattrs converter with the policy's primitive hooks registered before anything else."""
    c = cattrs.Converter(detailed_validation=True)
    c.register_structure_hook(str, read_str)
    c.register_structure_hook(int, read_int)
    c.register_structure_hook(float, read_float)
    c.register_structure_hook(bool, read_bool)
    # A predicate, not register_structure_hook(Any, ...): that goes to functools.singledispatch,
    # which takes typing.Any only where it is a class (3.11+); on 3.10 it raises TypeError.
    c.register_structure_hook_func(lambda t: t is Any, _any)
    c.register_structure_hook_factory(_is_primitive_union, _primitive_union_factory)
    c.register_structure_hook_func(_is_mapping, _mapping)

    def _tuple_factory(t: Any) -> Callable[[Any, Any], Any]:
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            hook = c.get_structure_hook(item)

            def structure_tuple(v: Any, _t: Any) -> tuple[Any, ...]:
                if v is None:
                    return ()
                if not isinstance(v, list):
                    raise TypeError(f"expected a list, got {_type_name(v)} {v!r:.40}")
                # A null item carries nothing (Chatwoot: an attachment of unknown type): skipped.
                return tuple(hook(x, item) for x in v if x is not None)

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
    # Its repr hides secret-named fields and members (server data may hold other users' secrets).
    cls.__repr__ = model_repr  # type: ignore[assignment]
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
                m = _new(_twin)                    # see realtime_sync._build: the same
                m.id = v0 ...                      # instance _cls(v0, ...) builds, without
                m.__class__ = _cls                 # attrs' object.__setattr__ per field
                return m
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


def _inexact(i: int, exact: frozenset[Any], ns: dict[str, Any]) -> str:
    """The test "``v<i>``'s type is not in ``exact``", as generated code: identity tests for a
    few types (``_type(v3) is not _x3_0 and v3 is not None``: about half the cost of the set
    lookup ``_type(v3) not in _e3``, on every field of every message), the set beyond that."""
    types = [t for t in exact if t is not type(None)]
    if len(types) > 3:
        return f"_type(v{i}) not in _e{i}"
    types.sort(key=lambda t: _COMMON.get(t, len(_COMMON)))  # the likelier first: it ends the test
    for j, t in enumerate(types):
        ns[f"_x{i}_{j}"] = t
    if not types:  # ``Model | None`` whose hook passes nothing through: only None is exact
        tests = []
    elif len(types) == 1:
        tests = [f"_type(v{i}) is not _x{i}_0"]
    else:
        tests = [f"(_k := _type(v{i})) is not _x{i}_0"] + [f"_k is not _x{i}_{j}" for j in range(1, len(types))]
    if type(None) in exact:
        tests.append(f"v{i} is not None")
    return " and ".join(tests)


#: Types in the order a payload's values most often have them (see _inexact).
_COMMON = {t: n for n, t in enumerate((str, int, dict, list, bool, float))}


def _generate(
    converter: cattrs.Converter, cls: type, renames: Mapping[str, str], detailed: Callable[[Any, Any], Any]
) -> Callable[[Any, Any], Any]:
    hints = typing.get_type_hints(cls)
    made = twin(cls)
    ns: dict[str, Any] = {"_cls": cls, "_detailed": detailed, "_M": _MISSING, "_type": type}
    ns.update(_new=object.__new__, _twin=made)
    body = []
    args = []
    stores = []
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
            exact = frozenset((type(None),)) | getattr(hook, "exact_types", frozenset())
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
        key = renames.get(a.name, a.name)
        if a.default is None and (exact is None or type(None) in exact):
            # Missing reads as null, which the field passes through unchanged to its default
            # None: one lookup and one type test (most fields of a real payload are like this).
            body.append(f"        v{i} = get({key!r})")
            if exact:
                body.append(f"        if {_inexact(i, exact, ns)}: v{i} = _h{i}(v{i}, _t{i})")
        else:
            body.append(f"        v{i} = get({key!r}, _M)")
            body.append(f"        if v{i} is _M: {missing}")
            if exact:
                body.append(f"        elif {_inexact(i, exact, ns)}: v{i} = _h{i}(v{i}, _t{i})")
            elif exact is not None:
                body.append(f"        else: v{i} = _h{i}(v{i}, _t{i})")
        args.append(f"{a.alias}=v{i}" if a.kw_only else f"v{i}")
        stores.append(f"        m.{a.name} = v{i}")
    if made is None:  # an __init__ that does more than store (see realtime_sync._build)
        build = [f"        return _cls({', '.join(args)})"]
    else:  # the same instance as _cls(...) builds, without attrs' per-field object.__setattr__
        build = ["        m = _new(_twin)", *stores, "        m.__class__ = _cls", "        return m"]
    src = "\n".join(
        [
            "def structure(o, t):",
            "    try:",
            "        if _type(o) is not dict: return _detailed(o, t)",
            "        get = o.get",
            *body,
            *build,
            "    except Exception:",
            "        return _detailed(o, t)",
        ]
    )
    code = compile(src, f"<realtime_sync structure {cls.__qualname__}>", "exec")
    # Every global the code reads must exist: a missing one would raise NameError on every
    # call, which the ``except`` turns into the slow path, silently (it happened: every
    # ``Model | None`` field sent its whole model to cattrs).
    inner = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    undefined = [n for n in inner.co_names if n.startswith("_") and n not in ns and not hasattr(builtins, n)]
    if undefined:  # pragma: no cover - a generator bug: cattrs serves (tests/test_models_fast_path.py fails)
        raise RuntimeError(f"structure of {cls.__qualname__}: names not defined: {undefined}")
    exec(code, ns)
    return ns["structure"]  # type: ignore[no-any-return]


def structure(converter: cattrs.Converter, data: Any, cls: type[T]) -> T:
    """Structure ``data`` as ``cls``; any failure becomes a :class:`ProtocolError` naming the path."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises ClassValidationError / ExceptionGroups
        raise ProtocolError(f"{cls.__name__}: {_details(exc, cls)}") from exc


def _format(exc: BaseException, t: Any) -> str:
    # Our readers' messages say what was expected and what came ("expected an integer, got
    # float 1.5"); cattrs' own wording is kept for everything else.
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return format_exception(exc, t)


def _details(exc: BaseException, cls: type) -> str:
    try:
        return "; ".join(
            f"{m.rsplit(' @ ', 1)[-1]}: {m.rsplit(' @ ', 1)[0]}"
            for m in cattrs.transform_error(exc, path=cls.__name__, format_exception=_format)
        )
    except Exception:  # pragma: no cover - defensive
        return f"{cls.__name__}: {exc}"


def _model_of(t: Any) -> type | None:
    """The attrs class of a field typed ``Model`` or ``Model | None``, else None."""
    if isinstance(t, type) and attrs.has(t):
        return t
    if _is_optional(t):
        inner = next(x for x in typing.get_args(t) if x is not type(None))
        if isinstance(inner, type) and attrs.has(inner):
            return inner
    return None


def _partial(converter: cattrs.Converter, data: dict[str, Any], cls: type) -> Any:
    """``cls`` from ``data`` keeping every field that fits; the others take their defaults.

    Nested models and tuples of models are read partially too, so one bad leaf costs only
    that leaf.  (Only called after the strict structure failed: not on the hot path.)
    """
    renames = _MODELS.get(cls, (None, {}))[1]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for a in attrs.fields(cls):
        if not a.init:
            continue
        key = renames.get(a.name, a.name)
        if key not in data:
            continue
        value, t = data[key], hints.get(a.name, Any)
        try:
            kwargs[a.alias] = converter.structure(value, t)
            continue
        except Exception:
            pass
        model = _model_of(t)
        if model is not None and isinstance(value, dict):
            kwargs[a.alias] = _partial(converter, value, model)
        elif _is_tuple(t) and isinstance(value, list):
            args = typing.get_args(t)
            item: Any = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
            inner = _model_of(item)
            items = []
            for x in value:
                try:
                    items.append(converter.structure(x, item))
                except Exception:
                    if inner is not None and isinstance(x, dict):
                        items.append(_partial(converter, x, inner))
            kwargs[a.alias] = tuple(items)
    try:
        return cls(**kwargs)
    except Exception:  # pragma: no cover - a field validator refused: all defaults
        return cls()


def decode(converter: cattrs.Converter, data: Any, cls: type[T]) -> tuple[Any, str | None]:
    """Read ``data`` as ``cls`` under the decoding policy; never raises for bad input.

    Returns ``(model, None)`` when everything fits; ``(partial model, mismatch)`` when some
    fields do not (those take their defaults); ``(data, mismatch)`` when ``data`` is not even
    an object.  ``None`` reads as an empty object (every field at its default).
    """
    original = data
    if data is None:
        data = {}
    try:
        return converter.structure(data, cls), None
    except Exception as exc:  # cattrs raises ClassValidationError / ExceptionGroups
        problem = _details(exc, cls)
    if not isinstance(data, dict):
        return data, problem
    try:
        return _partial(converter, data, cls), problem
    except Exception:  # a model with required fields and nothing to fill them: the decoded value
        return original, problem


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
