"""The VISS v2 message layer: requests in, responses and error objects out, independent of transport.

Every incoming message passes through `parse_request`, the one place that also accepts the
dialect of kuksa-client (and of the older kuksa.val server it was written for):
an `authorize` action carrying `tokens`, the `attribute` field (`value`/`targetValue`) on
get/set, `getMetaData`, and filter objects whose argument is named `value` (VISS v2
transport drafts) instead of `parameter` (VISS v2 core). After it, the server sees one
`Request` shape only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

from . import vss
from .errors import VissError, bad_request
from .filters import Filters, parse_filters

ACTIONS = ("get", "set", "subscribe", "unsubscribe", "authorize")
READ_ACTIONS = ("get", "subscribe", "unsubscribe", "authorize", "getMetaData")  # none of them changes anything
MAX_DEPTH = 32  # a VISS request nests four or five levels; anything far deeper is an attack on the parser
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_STRUCTURE = re.compile(rb"[\[\]{}]")
_NAMES_READ = re.compile(rb'"action"\s*:\s*"(?:' + "|".join(READ_ACTIONS).encode() + rb')"')
EXCERPT_CHARS = 256  # of a malformed request, in its audit row


@lru_cache(maxsize=4096)  # one publish stamps every signal alike: a history of many signals repeats each stamp
def timestamp(time_s: float) -> str:
    """VISS timestamps: RFC 3339 in UTC with milliseconds, e.g. 2026-04-15T13:37:00.123Z."""
    return datetime.fromtimestamp(time_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Request:
    action: str
    request_id: str | None
    path: str | None = None
    value: object = None
    filters: Filters = field(default_factory=Filters)
    token: str | None = None
    subscription_id: str | None = None


def decode(message: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> dict:
    """One JSON object from a frame, or bad_request (too large, not JSON, nested deeper than `max_depth`, not
    an object). Size and depth are checked before parsing, so no input reaches the parser's recursion;
    NaN and Infinity (not JSON, though Python's parser takes them) stay as `NotANumber` for the value
    checks to refuse by name."""
    msg = parse_json(message, max_bytes, max_depth)
    if not isinstance(msg, dict):
        raise bad_request(f"a request must be a JSON object, got {type(msg).__name__}")
    return msg


def parse_json(text: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH, what: str = "the message") -> object:
    """Any JSON value under the same limits as `decode` (for query parameters too)."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > max_bytes:
        raise bad_request(f"{what} has {len(raw)} bytes; at most {max_bytes} are accepted")
    depth = json_depth(raw)
    if depth > max_depth:
        raise bad_request(f"{what} nests {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(raw, parse_constant=NotANumber)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}") from None


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects, strings skipped: a linear scan, no recursion."""
    depth = deepest = 0
    for token in _STRUCTURE.findall(_STRINGS.sub(b"", raw)):
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class NotANumber:
    """A NaN or Infinity literal in a request: kept by name so the refusal (and its audit row) says what came."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


def may_change(msg: dict, frame: str | bytes) -> bool:
    """Whether a refused message could have been a set, so its refusal belongs in the audit: anything but a
    message that names a read action, decoded (`msg`) or, where it could not be decoded, in its text."""
    if msg:
        return msg.get("action") not in READ_ACTIONS
    raw = frame.encode() if isinstance(frame, str) else frame
    return b'"set"' in raw or _NAMES_READ.search(raw) is None


def excerpt(frame: str | bytes, limit: int = EXCERPT_CHARS, read_at_most: int | None = None) -> str:
    """A request as bounded text, for the audit of one that could not be read (`read_at_most`: where reading
    the frame stopped, so its whole length is unknown beyond it)."""
    text = frame if isinstance(frame, str) else frame[: 4 * limit].decode("utf-8", "backslashreplace")
    if len(frame) <= limit:
        return text
    unit = "characters" if isinstance(frame, str) else "bytes"
    if read_at_most is not None and len(frame) > read_at_most:
        return f"{text[:limit]}… (more than {read_at_most} {unit})"
    return f"{text[:limit]}… ({len(frame)} {unit} in all)"


def request_id_of(msg: dict) -> str | None:
    """The requestId to echo, even from a request that fails validation."""
    rid = msg.get("requestId")
    return str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


def parse_request(msg: dict) -> Request:
    """A decoded message as a `Request` (strict VISS v2 or the kuksa-client dialect), or VissError 400."""
    action = msg.get("action")
    if action == "getMetaData":  # kuksa.val server dialect
        action, msg = "get", {**msg, "filter": {"type": "static-metadata"}}
    if action not in ACTIONS:
        raise bad_request(f"'action' must be one of {', '.join(ACTIONS)}; got {action!r}")
    request_id = request_id_of(msg)
    if request_id is None:
        raise bad_request("'requestId' (a string) is required")
    token = msg.get("authorization", msg.get("tokens"))
    if action == "authorize":
        return Request(action, request_id, token=token)
    if action == "unsubscribe":
        sub = msg.get("subscriptionId")
        if not isinstance(sub, (str, int)) or isinstance(sub, bool):
            raise bad_request("'subscriptionId' is required to unsubscribe")
        return Request(action, request_id, subscription_id=str(sub), token=token)
    try:
        path = vss.request_path(msg.get("path"))
    except vss.InvalidValue as exc:
        raise bad_request(str(exc)) from None
    value = None
    if action == "set":
        attribute = msg.get("attribute", "value")
        if attribute not in ("value", "targetValue"):
            raise bad_request(f"'attribute' must be 'value' or 'targetValue', got {attribute!r}")
        if attribute not in msg:
            raise bad_request(f"a set needs '{attribute}'")
        value = msg[attribute]
    elif msg.get("attribute", "value") != "value":
        raise bad_request(f"only the 'value' attribute can be read, not {msg.get('attribute')!r}")
    return Request(action, request_id, path, value, parse_filters(msg.get("filter"), action), token)


def data_points(values: Sequence[tuple[str, object, float]]) -> dict | list:
    """VISS `data`: one {path, dp:{value, ts}} object, or a list of them for several signals."""
    return _one_or_list([{"path": path, "dp": _dp(value, ts)} for path, value, ts in values])


def series(values: Sequence[tuple[str, Sequence[tuple[object, float]]]]) -> dict | list:
    """VISS `data` with several values per signal (history, curve logging): {path, dp:[{value, ts}, ...]}."""
    return _one_or_list([{"path": path, "dp": [_dp(value, ts) for value, ts in points]} for path, points in values])


def _dp(value: object, ts: float) -> dict:
    return {"value": vss.to_wire(value), "ts": timestamp(ts)}


def _one_or_list(items: list[dict]) -> dict | list:
    return items[0] if len(items) == 1 else items


def response(request: Request, now: float, **members) -> dict:
    body = {"action": request.action, "requestId": request.request_id, **members, "ts": timestamp(now)}
    if request.subscription_id is not None and "subscriptionId" not in body:
        body["subscriptionId"] = request.subscription_id
    return body


def error_response(
    action: object, request_id: str | None, error: VissError, now: float, subscription_id: str | None = None
) -> dict:
    body: dict = {"action": action if action in ACTIONS else "unknown"}
    if request_id is not None:
        body["requestId"] = request_id
    if subscription_id is not None:
        body["subscriptionId"] = subscription_id
    return {**body, "error": error.as_dict(), "ts": timestamp(now)}
