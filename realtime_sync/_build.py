"""Building frozen, slotted attrs instances on the hot path without attrs' ``__init__``.

attrs' generated ``__init__`` of a frozen class stores each field through a bound
``object.__setattr__`` (a method-wrapper call, with an argument tuple, per field): a 24-field
``Message`` costs ~2 µs that way, and every message of a feed builds one or two models and an
event.  The hot path builds them through a *builder twin* instead: an empty-slots subclass
whose ``__setattr__``/``__delattr__`` are :class:`object`'s, so generated code fills the very
same slots with plain attribute stores (the interpreter's specialised slot store, ~5x
cheaper), then sets the instance's ``__class__`` to the real class (allowed: the twin adds
nothing to the layout).  What comes out is exactly what ``cls(...)`` builds: an instance of
``cls`` itself with the same value in every slot, so ``==``, ``hash``, ``repr``, pickling,
:func:`attrs.asdict`, :func:`attrs.evolve` and cattrs see no difference, and it stays frozen.

A field can also be *deferred* (:func:`defer_field`): the hot path stores a :class:`Deferred`
holding an input, and the field's value is computed from it on the first read (then stored in
place of it).  ``event.raw`` is one: hiding secret-named members costs a walk of the whole frame,
and most handlers never read ``raw``.  Every read goes through the class's property, so no
reader (``==``, pickling, :func:`attrs.asdict`, :func:`attrs.evolve`, a user) ever sees the
stored input; the twin stores into the slot directly.

Only for classes whose ``__init__`` does nothing else: every field in ``__init__``, no
validators or converters, no ``__attrs_pre_init__``/``__attrs_post_init__``, no slot that is
not a field (``cache_hash``).  :func:`twin` checks that, and checks at build time that the
twin's instance equals ``cls(...)``'s slot for slot; otherwise it returns ``None`` and the
callers call ``cls(...)`` as before.

>>> import attrs
>>> @attrs.frozen
... class Point:
...     x: int = 0
...     y: int = 0
>>> new_point = builder(Point)
>>> p = new_point(1, 2)
>>> type(p) is Point, p == Point(1, 2)
(True, True)
>>> p.x = 5
Traceback (most recent call last):
...
attr.exceptions.FrozenInstanceError: can't set attribute
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import attrs

__all__ = ["Deferred", "builder", "defer_field", "twin"]

T = TypeVar("T")

_TWINS: dict[type, type | None] = {}
#: The slot descriptors of deferred fields, by class (their class attribute is a property).
_DEFERRED: dict[type, dict[str, Any]] = {}


class Deferred:
    """What a deferred field holds until its first read: the input of its value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Deferred(...)"  # never the input: it may hold what the computed value hides


def defer_field(cls: type, name: str, compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Make field ``name`` of the slotted attrs class ``cls`` deferred: a :class:`Deferred`
    stored in it reads as ``compute(deferred.value)``, computed on the first read and then
    stored instead (two threads reading at once may both compute it: ``compute`` must be pure);
    any other value reads as itself.  Call before :func:`builder`/:func:`twin` of ``cls``.

    Returns ``peek(obj)``: the stored value, :class:`Deferred` or not, without computing it
    (for the library's own bookkeeping: sizes, ``None`` checks).

    >>> @attrs.frozen
    ... class Doc:
    ...     text: str = ""
    >>> peek = defer_field(Doc, "text", str.upper)
    >>> d = builder(Doc)(Deferred("hi"))
    >>> peek(d), d.text, peek(d)
    (Deferred(...), 'HI', 'HI')
    """
    assert cls not in _TWINS, "defer_field() must come before the class's twin is made"
    slot = cls.__dict__[name]  # the member descriptor of the field's slot
    get, put = slot.__get__, slot.__set__

    def read(obj: Any) -> Any:
        value = get(obj)
        if type(value) is Deferred:
            value = compute(value.value)
            put(obj, value)
        return value

    setattr(cls, name, property(read, put, doc=getattr(slot, "__doc__", None)))
    _DEFERRED.setdefault(cls, {})[name] = slot
    return get  # type: ignore[no-any-return]


def _slots(cls: type) -> set[str]:
    out: set[str] = set()
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        out.update((slots,) if isinstance(slots, str) else slots)
    return out - {"__weakref__"}


def _eligible(cls: type) -> bool:
    if not attrs.has(cls) or "__slots__" not in cls.__dict__ or cls.__dictoffset__ != 0:
        return False
    if getattr(cls, "__attrs_pre_init__", None) is not None or getattr(cls, "__attrs_post_init__", None) is not None:
        return False
    fields = attrs.fields(cls)
    if any(not a.init or a.validator is not None or a.converter is not None for a in fields):
        return False
    return _slots(cls) == {a.name for a in fields}


def twin(cls: type) -> type | None:
    """The builder twin of ``cls`` (see the module's docstring), or ``None`` when ``cls``'s
    ``__init__`` may do more than store its arguments."""
    if cls in _TWINS:
        return _TWINS[cls]
    made: type | None = None
    if _eligible(cls):
        made = type(
            f"{cls.__name__}Builder",
            (cls,),
            {
                "__slots__": (),
                "__setattr__": object.__setattr__,
                "__delattr__": object.__delattr__,
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__}Builder",
                "__doc__": f"Builds {cls.__qualname__} instances on the hot path (realtime_sync._build); never escapes.",
                # Deferred fields: the twin stores into their slots, not through the property.
                **_DEFERRED.get(cls, {}),
            },
        )
        if not _same_as_init(cls, made):  # pragma: no cover - an attrs that does more in __init__
            made = None
    _TWINS[cls] = made
    return made


def _same_as_init(cls: type, made: type) -> bool:
    """Build one instance both ways, with a distinct marker per field: same type, same slots."""
    fields = attrs.fields(cls)
    markers = [object() for _ in fields]
    try:
        ref = cls(**{a.alias: m for a, m in zip(fields, markers, strict=True)})
        obj: Any = object.__new__(made)
        for a, m in zip(fields, markers, strict=True):
            setattr(obj, a.name, m)
        obj.__class__ = cls
    except Exception:  # pragma: no cover - defensive
        return False
    return type(obj) is type(ref) and all(
        getattr(obj, a.name) is getattr(ref, a.name) is m for a, m in zip(fields, markers, strict=True)
    )


def builder(cls: type[T]) -> Callable[..., T]:
    """``build(v0, v1, ...)``: a new ``cls`` from every field's value, positionally in field
    order (no defaults); ``cls`` itself when it has no twin (then with the same arguments)."""
    made = twin(cls)
    if made is None:
        return cls
    names = [a.name for a in attrs.fields(made)]
    params = ", ".join(f"v{i}" for i in range(len(names)))
    lines = [f"def build({params}):", "    o = _new(_twin)"]
    lines += [f"    o.{name} = v{i}" for i, name in enumerate(names)]
    lines += ["    o.__class__ = _cls", "    return o"]
    ns: dict[str, Any] = {"_new": object.__new__, "_twin": made, "_cls": cls}
    exec(compile("\n".join(lines), f"<realtime_sync builder {cls.__qualname__}>", "exec"), ns)
    build: Callable[..., T] = ns["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    return build
