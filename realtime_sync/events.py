"""The events handed to callbacks, and the payloads of the lifecycle events."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from typing import TYPE_CHECKING, Any, Generic, Hashable, Mapping

import attrs

from . import _json, _redact
from ._build import Deferred, builder, defer_field
from ._redact import REDACTED, redact

#: The type of ``event.data``: ``Event[Message]`` in a handler's annotation.  Its default (PEP
#: 696) keeps a bare ``Event`` meaning ``Event[Any]``, also under ``mypy --strict``; Python
#: before 3.13 has TypeVar defaults only in typing_extensions, which type checkers bundle.
if TYPE_CHECKING:
    from typing_extensions import TypeVar

    DataT = TypeVar("DataT", default=Any)
else:
    from typing import TypeVar

    DataT = TypeVar("DataT")

__all__ = [
    "LIFECYCLE_EVENTS",
    "ConnectionInfo",
    "DisconnectInfo",
    "ErrorInfo",
    "Event",
    "ReconnectInfo",
    "Subscription",
    "SubscriptionInfo",
    "public_raw",
    "public_subscription",
]

#: Lifecycle event names every client emits through ``on()``.
LIFECYCLE_EVENTS = (
    "connected",
    "disconnected",
    "reconnecting",
    "subscribed",
    "subscription_rejected",
    "error",
)


def _redact_optional(value: Any) -> Any:
    # Payload text echoed by a server (a disconnect reason, an HTTP 401 body, a Bayeux
    # ``error``) may quote a token: lifecycle payloads are redacted when they are built.
    return None if value is None else redact(value)


@attrs.frozen(repr=False)
class Subscription:
    """One thing a client is subscribed to: a ticket, a channel identifier, a Bayeux topic...

    ``kind`` names the family (``"ticket"``, ``"connector"``, ``"channel"``, ``"topic"``...),
    ``key`` identifies it within the family.  Equal subscriptions are the same subscription.
    Its repr is redacted (an ActionCable identifier carries the pubsub token).

    >>> Subscription("ticket", 32423)
    Subscription('ticket', 32423)
    """

    kind: str
    key: Hashable
    #: Set on the redacted copy of a subscription whose key held a secret: a salted digest of
    #: the original key (random salt per process), so that two subscriptions differing only by
    #: their secret stay different without the secret being recoverable.
    digest: str | None = attrs.field(default=None, kw_only=True, repr=False)

    def __repr__(self) -> str:
        return redact(f"Subscription({self.kind!r}, {self.key!r})")


@attrs.frozen(slots=True, repr=False)
class Event(Generic[DataT]):
    """One thing that happened, as delivered to a callback.

    Generic in the type of ``data``: annotate a handler with the model its events carry, and a
    type checker checks the fields you read (``event.data.contnet`` is an error)::

        from realtime_sync.models.voxsig import Message

        @client.on("message.created")
        def show(event: rs.Event[Message]) -> None:
            print(event.data.content)

    Attributes:
        name: the event name (``"message.created"``, ``"ticket.updated"``, ``"connected"``...).
        data: a typed frozen model where the payload is known, else the decoded JSON value;
            for lifecycle events one of :class:`ConnectionInfo`, :class:`DisconnectInfo`,
            :class:`ReconnectInfo`, :class:`SubscriptionInfo`, :class:`ErrorInfo`.
        entity_id: the id of the entity the event is about (ticket id, conversation id, chat id
            ...), or ``None``.
        raw: the decoded message the event came from (``None`` for lifecycle events).
        received_at: wall-clock time (``time.time()``) when the frame was received.
        subscription: the :class:`Subscription` the event arrived through, when known.
        changes: for change detection (``on(..., changes_only=True)``), the names of the fields
            that differ from the previous snapshot of the same entity; else ``None``.
        decode_error: ``None`` when the payload fit its model; else what did not fit (``"Message.id:
            expected int or null, got str 'x'"``).  The event is delivered anyway: ``data`` holds
            the model with every field that fit (the others at their defaults), or the decoded
            JSON when it was not an object, and an ``error`` event of kind ``"decode"`` follows.
        account_id: the account the event belongs to, where the vendor has accounts (Voxsig:
            ``data.account_id`` of the broadcast, an int, or the string sent when it is not a
            number); else ``None``.
        recovered: ``True`` when the event was not received live but fetched after a reconnect
            (Voxsig catch-up over Chatwoot's REST API); else ``False``.

    >>> Event("ticket.updated", {"state": 1}, entity_id=7).entity_id
    7
    """

    name: str
    data: DataT = None  # type: ignore[assignment]
    entity_id: Any = None
    raw: Any = None
    received_at: float = 0.0
    subscription: Subscription | None = None
    changes: frozenset[str] | None = None
    decode_error: str | None = None
    account_id: int | str | None = None
    recovered: bool = False

    def __repr__(self) -> str:
        # Redacted before it is cut (no prefix of a secret survives), and only a window of it:
        # the repr of a 1 MiB chat message costs no more than a short one.
        # Members named as secrets (a contact's pubsub_token, a password in custom attributes)
        # are hidden structurally first: the text rules do not read Python reprs.
        data = _redact.truncate(_redact.redacted_repr(self.data), 200)
        return f"Event(name={self.name!r}, entity_id={redact(repr(self.entity_id))}, data={data})"

    @property
    def key(self) -> str:
        """A stable key for deduplication: equal for the same event received twice (by two
        replicas, or again after a reconnect), whatever the receive time.

        ``"<vendor>/<event id>"`` where the protocol gives events an id (Jifeline partner system
        events), else ``"<name>/<sha1>"`` of the name, the entity id and the (redacted) raw
        message.  Lifecycle events have no raw message: their key includes ``received_at``.

        >>> Event("ticket.updated", {"state": 1}, entity_id=7, raw={"id": 7}).key
        'ticket.updated/6a56ce46eb0599490cb0a90a5753af9cd00fa1b0'
        """
        event_id = getattr(self.data, "event_id", None)
        if isinstance(event_id, str) and event_id:
            return f"{type(self.data).__module__.rsplit('.', 1)[-1]}/{event_id}"
        basis: list[Any] = [self.name, _jsonable(self.entity_id), _jsonable(self.raw)]
        if self.raw is None:
            basis.append(self.received_at)
        digest = hashlib.sha1(
            json.dumps(basis, sort_keys=True, separators=(",", ":"), default=str).encode()
        ).hexdigest()
        return f"{self.name}/{digest}"

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON types, for a queue, a task or a log (secrets left out).

        ``data`` is the typed model as the server sent it (wire field names), with
        ``data_type`` naming its model (``"voxsig.Message"``) so that :meth:`from_dict` rebuilds
        it; ``raw`` and ``subscription`` are the redacted copies the event carries; ``key`` is
        :attr:`key`.  Every registered secret is replaced by ``***`` wherever it appears.

        >>> d = Event("ticket.updated", {"state": 1}, entity_id=7, raw={"state": 1}).to_dict()
        >>> d["name"], d["data"], d["data_type"]
        ('ticket.updated', {'state': 1}, None)
        >>> Event.from_dict(d) == Event("ticket.updated", {"state": 1}, entity_id=7, raw={"state": 1})
        True
        """
        data_type, data = _data_to_json(self.data)
        sub = self.subscription
        out = {
            "name": self.name,
            "key": self.key,
            "entity_id": _jsonable(self.entity_id),
            "data_type": data_type,
            "data": data,
            "raw": _jsonable(self.raw),
            "received_at": self.received_at,
            "subscription": None if sub is None else _jsonable(sub),
            "changes": None if self.changes is None else sorted(self.changes),
            "decode_error": self.decode_error,
            "account_id": _jsonable(self.account_id),
            "recovered": self.recovered,
        }
        return _scrub(out)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event[Any]:
        """Rebuild an event from :meth:`to_dict`'s output (after a trip through JSON).

        ``data`` becomes its model again when ``data_type`` names one (a payload that no longer
        fits follows the decoding policy, as live decoding does: the model with every field that
        fits, and ``decode_error`` says what did not); ``raw`` and the subscription are the
        redacted copies.

        >>> e = Event.from_dict({"name": "message.created", "data": {"id": 1, "content": "hi"},
        ...                      "data_type": "voxsig.Message", "entity_id": 3})
        >>> e.data.content, e.entity_id
        ('hi', 3)
        """
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise ValueError("Event.from_dict() needs a dict made by Event.to_dict() (with a 'name')")
        subscription = _subscription_from_json(d.get("subscription"))
        changes = d.get("changes")
        entity_id = d.get("entity_id")
        if isinstance(entity_id, list):
            entity_id = tuple(entity_id)  # (account_id, id) of a Voxsig all_accounts client
        data, problem = _data_from_json(d.get("data_type"), d.get("data"))
        return cls(
            d["name"],
            data,
            entity_id,
            d.get("raw"),
            float(d.get("received_at") or 0.0),
            subscription,
            None if changes is None else frozenset(changes),
            d.get("decode_error") or problem,
            d.get("account_id"),
            bool(d.get("recovered", False)),
        )


#: ``event.raw`` is deferred (see :mod:`realtime_sync._build`): the adapters store the frame as
#: ``Deferred(frame)`` (:func:`deferred_raw`), and the walk that hides members named as secrets
#: (:func:`~realtime_sync._redact.redact_members`, ~3 µs for a Voxsig broadcast) runs on the
#: first read of ``event.raw``, by whatever reads it (a handler, ``to_dict()``, ``key``,
#: pickling, ``==``): a handler that reads only ``event.data`` never pays for it, and no reader
#: can see the frame before the walk.  ``stored_raw(event)``: what the slot holds, for sizes
#: and ``None`` checks only (:mod:`realtime_sync.dispatch`); never hand it out.
#: A live broadcast stores its frame's text instead (:func:`deferred_frame`), decoded again on
#: that first read.


def _read_raw(value: Any) -> Any:
    if type(value) is tuple:  # (frame text, members to replace): see deferred_frame()
        text, patch = value
        value = _json.loads(text)
        value.update(patch)
    return _redact.redact_members(value)


stored_raw = defer_field(Event, "raw", _read_raw)

#: ``build_event(name, data, entity_id, raw, received_at, subscription, changes, decode_error,
#: account_id, recovered)``: the same :class:`Event` as ``Event(...)`` with every field given,
#: without attrs' per-field ``object.__setattr__`` (see :mod:`realtime_sync._build`).  Every
#: event of a feed is built here (``Adapter._emit``).
build_event = builder(Event)


@attrs.frozen(repr=False)
class ErrorInfo:
    """Payload of an ``error`` event.

    ``kind`` is one of ``"bad_frame"`` (not JSON, wrong shape, wrong type, too big),
    ``"decode"`` (a payload did not fit its model: the event was still delivered, with
    ``event.decode_error``), ``"handler"`` (a callback raised), ``"connect"`` (the connection failed), ``"auth"``
    (credentials refused), ``"server"`` (the server reported an error or told us not to come
    back), ``"subscription"`` (a subscription failed or was never confirmed), ``"overflow"``
    (the event queue was full), ``"token"`` (a token provider failed), ``"publish"`` (a
    Bayeux publish may not have arrived: ``event.raw`` is the publish, see
    :meth:`~realtime_sync.CometDClient.publish`).  ``frame`` is the
    offending frame, redacted and truncated to 500 characters.
    """

    kind: str
    message: str = attrs.field(converter=redact)
    frame: str | None = attrs.field(default=None, converter=_redact_optional)
    exception: BaseException | None = None

    def __repr__(self) -> str:
        return redact(f"ErrorInfo(kind={self.kind!r}, message={self.message!r}, frame={self.frame!r})")

    def __str__(self) -> str:
        return redact(self.message)


@attrs.frozen
class ConnectionInfo:
    """Payload of ``connected``: the (redacted) URL, the subprotocol chosen, the attempt number
    within the outage (1: the first try after the connection was lost, or the first ever)."""

    url: str = attrs.field(converter=redact)
    subprotocol: str | None = None
    attempt: int = 0


@attrs.frozen
class DisconnectInfo:
    """Payload of ``disconnected``: why, and whether the client will reconnect."""

    reason: str = attrs.field(converter=redact)
    will_reconnect: bool = True
    code: int | None = None


@attrs.frozen
class ReconnectInfo:
    """Payload of ``reconnecting``: the consecutive attempt number (failures in a row, reset once
    a connection stayed up ``stable_after`` seconds) and the delay before it."""

    attempt: int
    delay: float


@attrs.frozen
class SubscriptionInfo:
    """Payload of ``subscribed`` / ``subscription_rejected``; ``reason`` says why it failed."""

    subscription: Subscription
    reason: str | None = attrs.field(default=None, converter=_redact_optional)


# -- what leaves the library: redacted copies ---------------------------------------------------

_public_subs: dict[Subscription, Subscription] = {}
_public_strs: dict[str, str] = {}
_cached_for: tuple[str, ...] = ()  # the secrets registry the two caches were computed against
_CACHE_MAX = 4096
_SALT = os.urandom(16)
_new = object.__new__


def _check_cache() -> None:
    global _cached_for
    if _redact._by_length is not _cached_for:  # a secret was registered since: recompute
        _public_subs.clear()
        _public_strs.clear()
        _cached_for = _redact._by_length
    elif len(_public_strs) > _CACHE_MAX or len(_public_subs) > _CACHE_MAX:
        _public_subs.clear()
        _public_strs.clear()


def _public_str(value: str) -> str:
    out = _public_strs.get(value)
    if out is None:
        out = _public_strs[value] = redact(value)
    return out


def public_text(value: str) -> str:
    """``value`` with every registered secret replaced by ``***`` (cached: for strings that
    recur in every frame, such as an ActionCable identifier).

    >>> public_text('{"channel":"RoomChannel","pubsub_token":"abc"}')
    '{"channel":"RoomChannel","pubsub_token":"***"}'
    """
    _check_cache()
    return _public_str(value)


def public_subscription(sub: Subscription) -> Subscription:
    """``sub`` as events show it: the same subscription unless its key holds a secret (an
    ActionCable identifier carries the pubsub token), then a copy with the secret replaced by
    ``***``.  Cached: the transport calls it for every event.

    >>> public_subscription(Subscription("channel", '{"channel":"RoomChannel","pubsub_token":"abc"}'))
    Subscription('channel', '{"channel":"RoomChannel","pubsub_token":"***"}')
    """
    _check_cache()
    out = _public_subs.get(sub)
    if out is None:
        key = sub.key
        public = _public_str(key) if isinstance(key, str) else key
        if public == key:
            out = sub
        else:
            digest = hashlib.sha256(_SALT + repr(key).encode()).hexdigest()[:16]
            out = Subscription(sub.kind, public, digest=digest)
        _public_subs[sub] = out
    return out


def _holds_secret(value: str) -> bool:
    # JSON inside JSON (an ActionCable identifier) may name a secret member; any string may hold
    # a secret the client registered.  Both checks are cheap; redact() runs only on a hit.
    return value[:1] == "{" or _redact.may_hold_text_secret(value)


def public_raw(raw: Any) -> Any:
    """``raw`` as events carry it: every top-level string that holds a secret redacted (the
    identifier of an ActionCable frame) and every member named as a secret hidden at any depth
    (copy on write: ``raw`` itself when nothing needed hiding).

    >>> public_raw({"identifier": '{"channel":"RoomChannel","pubsub_token":"abc"}', "message": {}})
    {'identifier': '{"channel":"RoomChannel","pubsub_token":"***"}', 'message': {}}
    """
    if type(raw) is dict:
        raw = _public_strings(raw)
    elif type(raw) is not list:
        return raw
    return _redact.redact_members(raw)


def deferred_raw(raw: Any, strings_done: bool = False) -> Any:
    """``raw`` as :func:`build_event` takes it: :func:`public_raw` with the member walk left to
    the first read of ``event.raw`` (the top-level strings are redacted now, against the secrets
    registered now; ``strings_done``: the caller did that already).

    >>> e = build_event("x", None, None, deferred_raw({"id": 1, "pubsub_token": "abc"}), 0.0,
    ...                 None, None, None, None, False)
    >>> e.raw
    {'id': 1, 'pubsub_token': '***'}
    """
    kind = type(raw)
    if kind is dict:
        if not strings_done:
            raw = _public_strings(raw)
    elif kind is not list:
        return raw
    deferred = _new(Deferred)  # Deferred(raw) without a Python __init__ call: every event comes here
    deferred.value = raw
    return deferred


def deferred_frame(text: str, patch: Mapping[str, Any]) -> Any:
    """``raw`` as :func:`build_event` takes it, for an event whose raw is the JSON object
    ``text`` with its top-level members ``patch`` replaced (``patch`` is public already):
    ``text`` is decoded again, and walked for secrets, on the first read of ``event.raw``.

    The one-call path of a live broadcast keeps the frame's text rather than its decoded tree:
    the tree (the dicts the event's model does not hold) dies at once, on the thread and in the
    cache that built it, instead of crossing to the dispatcher with the event.  A handler that
    reads ``event.raw`` pays one more decode (~2.5 µs for a Voxsig broadcast, with orjson).

    >>> e = build_event("x", None, None, deferred_frame('{"id": 1, "token": "abc"}', {"id": 2}),
    ...                 0.0, None, None, None, None, False)
    >>> e.raw
    {'id': 2, 'token': '***'}
    """
    deferred = _new(Deferred)
    deferred.value = (text, patch)
    return deferred


def _public_strings(raw: dict[Any, Any]) -> dict[Any, Any]:
    """``raw`` with every top-level string that holds a secret redacted (copy on write)."""
    out = None
    for k, v in raw.items():
        if type(v) is str and _holds_secret(v):
            _check_cache()
            public = _public_str(v)
            if public != v:
                if out is None:
                    out = dict(raw)
                out[k] = public
    return raw if out is None else out


# -- to_dict / from_dict ------------------------------------------------------------------------

_LIFECYCLE_INFOS: dict[str, type] = {}  # filled below the classes


def _jsonable(value: Any) -> Any:
    """Plain JSON types: models by their wire names, events by to_dict(), exceptions by name."""
    from .models._converter import unstructure

    if isinstance(value, Event):
        return value.to_dict()
    if isinstance(value, Subscription):
        value = public_subscription(value)
        return {"kind": value.kind, "key": _jsonable(value.key), "digest": value.digest}
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {redact(value)}"
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    if attrs.has(type(value)) and not _is_model(type(value)):
        return {a.name: _jsonable(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if attrs.has(type(value)):
        return unstructure(value)
    return str(value)


def _is_model(cls: type) -> bool:
    return cls.__module__.startswith("realtime_sync.models.")


def _data_to_json(data: Any) -> tuple[str | None, Any]:
    cls = type(data)
    if _is_model(cls):
        from .models._converter import unstructure

        return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}", unstructure(data)
    if cls.__name__ in _LIFECYCLE_INFOS and _LIFECYCLE_INFOS[cls.__name__] is cls:
        return cls.__name__, _jsonable(data)
    return None, _jsonable(data)


def _data_from_json(data_type: Any, data: Any) -> tuple[Any, str | None]:
    """``data`` rebuilt as the model ``data_type`` names, and what did not fit (or None)."""
    if not isinstance(data_type, str) or not isinstance(data, dict):
        return data, None
    info = _LIFECYCLE_INFOS.get(data_type)
    if info is not None:
        kwargs = dict(data)
        if info is SubscriptionInfo:
            kwargs["subscription"] = _subscription_from_json(kwargs.get("subscription"))
        if info is ErrorInfo:
            kwargs["exception"] = None
        try:
            return info(**kwargs), None
        except TypeError:
            return data, None
    module, _, name = data_type.partition(".")
    if not (module.isidentifier() and name.isidentifier()):
        return data, None
    try:
        mod = importlib.import_module(f"realtime_sync.models.{module}")
    except ImportError:
        return data, None
    cls = getattr(mod, name, None)
    if not isinstance(cls, type) or not attrs.has(cls):
        return data, None
    from .exceptions import ProtocolError
    from .models._converter import _MODELS, decode, restructure

    try:
        return restructure(data, cls), None
    except ProtocolError as exc:
        # The decoding policy, as live decoding applies it: the model with what fits, and why.
        entry = _MODELS.get(cls)
        return decode(entry[0], data, cls) if entry is not None else (data, str(exc))


def _subscription_from_json(sub: Any) -> Subscription | None:
    if not isinstance(sub, Mapping):
        return None
    key = sub.get("key")
    digest = sub.get("digest")
    return Subscription(
        str(sub.get("kind")),
        tuple(key) if isinstance(key, list) else key,
        digest=digest if isinstance(digest, str) else None,
    )


def _scrub(value: Any) -> Any:
    """Replace registered secrets in every string of a JSON value, and hide the value of every
    member named as a secret (``pubsub_token``, ``password``...)."""
    if isinstance(value, str):
        return redact(value) if _holds_secret(value) else value
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and v is not None and not isinstance(v, bool) and _redact.is_secret_name(k)
            else _scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


_LIFECYCLE_INFOS.update(
    {c.__name__: c for c in (ConnectionInfo, DisconnectInfo, ErrorInfo, ReconnectInfo, SubscriptionInfo)}
)
