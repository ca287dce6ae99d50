"""The hot path builds models and events without attrs' ``__init__`` (realtime_sync._build):
what comes out must be the very instance ``cls(...)`` builds, for every use a user has of it."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import attrs
import cattrs
import pytest

from realtime_sync import Event
from realtime_sync._build import builder, twin
from realtime_sync.events import Subscription, build_event
from realtime_sync.models import _converter as cv
from realtime_sync.models import genesys, jifeline, voxsig

MODELS = [
    (mod, cls)
    for mod in (voxsig, jifeline, genesys)
    for cls in vars(mod).values()
    if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == mod.__name__
]

FRAME = {
    "id": 500_001,
    "content": "Hello, I ordered a blue kettle",
    "account_id": 1,
    "inbox_id": 3,
    "conversation_id": 1001,
    "message_type": 0,
    "created_at": 1_700_000_001,
    "private": "false",  # a spelling the policy reads (converted, not passed through)
    "status": "sent",
    "content_type": "text",
    "content_attributes": {"in_reply_to": None},
    "sender_type": "Contact",
    "sender_id": 90_001,
    "sender": {"id": 90_001, "name": "Jane Doe", "type": "contact", "email": "jane@example.com"},
    "attachments": [None, {"id": 9, "file_type": "image"}],
}


def _same(a: Any, b: Any) -> None:
    """``a`` (built by the hot path) is indistinguishable from ``b`` (built by ``cls(...)``)."""
    assert type(a) is type(b)
    assert a == b and not (a != b)
    assert repr(a) == repr(b)
    assert attrs.asdict(a) == attrs.asdict(b)
    assert attrs.astuple(a) == attrs.astuple(b)
    assert cattrs.unstructure(a) == cattrs.unstructure(b)
    assert cv.unstructure(a) == cv.unstructure(b)
    assert pickle.loads(pickle.dumps(a)) == b
    assert copy.copy(a) == b and copy.deepcopy(a) == b
    for f in attrs.fields(type(a)):
        assert getattr(a, f.name) == getattr(b, f.name), f.name
    try:
        hash(b)
    except TypeError:  # a model holding a dict: unhashable either way
        with pytest.raises(TypeError):
            hash(a)
    else:
        assert hash(a) == hash(b)


def test_every_vendor_model_is_built_by_the_twin():
    missing = [cls.__qualname__ for _, cls in MODELS if twin(cls) is None]
    assert not missing  # a model whose __init__ does more would fall back to cls(...): say so here


def test_a_message_from_the_generated_hook_is_the_message_init_builds():
    hook = voxsig.structure_hook(voxsig.Message)
    fast = hook(FRAME, voxsig.Message)
    slow = voxsig.Message(
        **{
            **{k: v for k, v in FRAME.items() if k not in ("sender", "attachments", "private")},
            "private": False,
            "sender": voxsig.Contact(id=90_001, name="Jane Doe", type="contact", email="jane@example.com"),
            "attachments": (voxsig.Attachment(id=9, file_type="image"),),
        }
    )
    _same(fast, slow)
    _same(fast.sender, slow.sender)
    _same(fast.attachments[0], slow.attachments[0])
    assert attrs.evolve(fast, content="edited") == attrs.evolve(slow, content="edited")


@pytest.mark.parametrize(("mod", "cls"), MODELS, ids=[c.__qualname__ for _, c in MODELS])
def test_every_model_from_its_hook_matches_cls_init(mod: Any, cls: type) -> None:
    hook = mod._converter.get_structure_hook(cls)
    required = {a.name: f"<{a.name}>" for a in attrs.fields(cls) if a.default is attrs.NOTHING}  # str ids
    built = hook(dict(required), cls)
    _same(built, cls(**required))
    # And from what the model unstructures to (every field present, nested models included).
    again = hook(cv.unstructure(built), cls)
    _same(again, built)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(built, attrs.fields(cls)[0].name, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        delattr(built, attrs.fields(cls)[0].name)


def test_models_stay_frozen_and_weakly_referenceable():
    import weakref

    m = voxsig.structure_hook(voxsig.Message)(FRAME, voxsig.Message)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m.content = "changed"  # type: ignore[misc]
    assert weakref.ref(m)() is m
    assert not hasattr(m, "__dict__")


def test_build_event_is_the_event_init_builds():
    sub = Subscription("channel", '{"channel":"RoomChannel"}')
    model = voxsig.structure_hook(voxsig.Message)(FRAME, voxsig.Message)
    args = ("message.created", model, 1001, {"message": FRAME}, 1.5, sub, frozenset({"content"}), None, 1, True)
    fast, slow = build_event(*args), Event(*args)
    _same(fast, slow)
    assert fast.key == slow.key and fast.to_dict() == slow.to_dict()
    assert Event.from_dict(fast.to_dict()) == Event.from_dict(slow.to_dict())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.name = "other"  # type: ignore[misc]


@attrs.frozen
class _Validated:
    x: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))


@attrs.frozen
class _PostInit:
    x: int = 0

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "x", self.x + 1)


@attrs.frozen
class _Converted:
    x: int = attrs.field(default=0, converter=int)


@attrs.frozen(cache_hash=True)
class _CachedHash:
    x: int = 0


@attrs.frozen
class _NotInInit:
    x: int = 0
    y: int = attrs.field(default=5, init=False)


@attrs.frozen(slots=False)
class _DictClass:
    x: int = 0


@attrs.frozen
class _Plain:
    x: int = 0
    y: str = "a"


@attrs.frozen
class _Child(_Plain):
    z: float = 0.5


@pytest.mark.parametrize("cls", [_Validated, _PostInit, _Converted, _CachedHash, _NotInInit, _DictClass])
def test_a_class_whose_init_does_more_keeps_its_init(cls: type) -> None:
    assert twin(cls) is None
    assert builder(cls) is cls  # the callers call cls(...) itself


def test_the_post_init_and_converter_still_run_through_a_hook() -> None:
    conv = cv.make_converter()
    cv.register(conv, _PostInit)
    cv.register(conv, _Converted)
    assert conv.get_structure_hook(_PostInit)({"x": 1}, _PostInit).x == 2
    assert conv.get_structure_hook(_Converted)({"x": 3}, _Converted) == _Converted(3)


def test_subclasses_and_plain_classes_are_built_exactly() -> None:
    for cls, args in ((_Plain, (1, "b")), (_Child, (1, "b", 2.5))):
        assert twin(cls) is not None
        _same(builder(cls)(*args), cls(*args))
    conv = cv.make_converter()
    cv.register(conv, _Child)
    _same(conv.get_structure_hook(_Child)({"x": 2, "z": 1}, _Child), _Child(2, "a", 1.0))
