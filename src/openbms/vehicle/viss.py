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
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import vss

ACTIONS = ("get", "set", "subscribe", "unsubscribe", "authorize")
_CHANGE_OPS = {"eq": lambda d, x: d == x, "ne": lambda d, x: d != x, "gt": lambda d, x: d > x,
               "gte": lambda d, x: d >= x, "lt": lambda d, x: d < x, "lte": lambda d, x: d <= x}
MIN_PERIOD_MS = 100


class VissError(Exception):
    """A request the server refuses, as a VISS error object (number, reason, message)."""

    def __init__(self, number: int, reason: str, message: str):
        super().__init__(message)
        self.number, self.reason, self.message = number, reason, message

    def as_dict(self) -> dict:
        return {"number": self.number, "reason": self.reason, "message": self.message}


def bad_request(message: str) -> VissError:
    return VissError(400, "bad_request", message)


def timestamp(time_s: float) -> str:
    """VISS timestamps: RFC 3339 in UTC with milliseconds, e.g. 2026-04-15T13:37:00.123Z."""
    return datetime.fromtimestamp(time_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ChangeFilter:
    """Notify when `new - last_notified` satisfies `logic_op` against `diff` (VISS change filter)."""

    logic_op: str
    diff: float

    def passes(self, last: object, new: object) -> bool:
        if last is None:
            return True
        if isinstance(new, (int, float)) and isinstance(last, (int, float)):
            return _CHANGE_OPS[self.logic_op](new - last, self.diff)
        changed = new != last  # strings, booleans, arrays: only eq/ne make sense
        return changed if self.logic_op != "eq" else not changed


@dataclass(frozen=True)
class Filters:
    paths: tuple[str, ...] | None = None
    period_s: float | None = None
    change: ChangeFilter | None = None
    metadata: bool = False


@dataclass(frozen=True)
class Request:
    action: str
    request_id: str | None
    path: str | None = None
    value: object = None
    filters: Filters = field(default_factory=Filters)
    token: str | None = None
    subscription_id: str | None = None


def decode(message: str | bytes, max_bytes: int) -> dict:
    """One JSON object from a frame, or 413 (too large) / 400 (not JSON, not an object)."""
    size = len(message.encode() if isinstance(message, str) else message)
    if size > max_bytes:
        raise VissError(413, "payload_too_large", f"the message has {size} bytes; at most {max_bytes} are accepted")
    try:
        msg = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the message is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise bad_request(f"a request must be a JSON object, got {type(msg).__name__}")
    return msg


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
        path = vss.normalize_path(msg.get("path"))
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


def parse_filters(raw: object, action: str) -> Filters:
    """VISS filter object(s): `paths`, `timebased`, `change`, `static-metadata`."""
    if raw is None:
        return Filters()
    items = raw if isinstance(raw, list) else [raw]
    found: dict[str, object] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise VissError(400, "filter_invalid", "a filter is an object with a 'type' and a 'parameter'")
        found[item["type"]] = item.get("parameter", item.get("value"))
    unknown = set(found) - {"paths", "timebased", "change", "static-metadata"}
    if unknown:
        raise VissError(400, "filter_invalid", f"filter type {sorted(unknown)[0]!r} is not supported here "
                                                "(paths, timebased, change, static-metadata are)")
    if ("timebased" in found or "change" in found) and action != "subscribe":
        raise VissError(400, "filter_invalid", "timebased and change filters apply to subscribe only")
    if "static-metadata" in found and action != "get":
        raise VissError(400, "filter_invalid", "the static-metadata filter applies to get only")
    if "timebased" in found and "change" in found:
        raise VissError(400, "filter_invalid", "choose either a timebased or a change filter")
    return Filters(_paths(found["paths"]) if "paths" in found else None,
                   _period_s(found["timebased"]) if "timebased" in found else None,
                   _change(found["change"]) if "change" in found else None,
                   "static-metadata" in found)


def _paths(parameter: object) -> tuple[str, ...]:
    paths = [parameter] if isinstance(parameter, str) else parameter
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise VissError(400, "filter_invalid", "a paths filter takes a relative path or a non-empty list of them")
    return tuple(paths)


def _period_s(parameter: object) -> float:
    period = parameter.get("period") if isinstance(parameter, dict) else None
    try:
        ms = float(period)
    except (TypeError, ValueError):
        raise VissError(400, "invalid_duration", "a timebased filter takes {\"period\": \"<milliseconds>\"}") from None
    if not math.isfinite(ms) or ms < MIN_PERIOD_MS:
        raise VissError(400, "invalid_duration", f"the period must be at least {MIN_PERIOD_MS} ms; got {period!r}")
    return ms / 1000


def _change(parameter: object) -> ChangeFilter:
    if not isinstance(parameter, dict) or parameter.get("logic-op") not in _CHANGE_OPS:
        raise VissError(400, "filter_invalid", "a change filter takes {\"logic-op\": one of "
                                               f"{', '.join(_CHANGE_OPS)}, \"diff\": \"<number>\"}}")
    try:
        diff = float(parameter.get("diff", 0))
    except (TypeError, ValueError):
        raise VissError(400, "filter_invalid", f"the change filter's diff must be a number, got "
                                               f"{parameter.get('diff')!r}") from None
    return ChangeFilter(parameter["logic-op"], diff)


def data_points(values: list[tuple[str, object, float]]) -> dict | list:
    """VISS `data`: one {path, dp:{value, ts}} object, or a list of them for several signals."""
    points = [{"path": path, "dp": {"value": vss.to_wire(value), "ts": timestamp(ts)}} for path, value, ts in values]
    return points[0] if len(points) == 1 else points


def response(request: Request, now: float, **members) -> dict:
    body = {"action": request.action, "requestId": request.request_id, **members, "ts": timestamp(now)}
    if request.subscription_id is not None and "subscriptionId" not in body:
        body["subscriptionId"] = request.subscription_id
    return body


def error_response(action: object, request_id: str | None, error: VissError, now: float,
                   subscription_id: str | None = None) -> dict:
    body: dict = {"action": action if action in ACTIONS else "unknown"}
    if request_id is not None:
        body["requestId"] = request_id
    if subscription_id is not None:
        body["subscriptionId"] = subscription_id
    return {**body, "error": error.as_dict(), "ts": timestamp(now)}
