"""VISS v2 filters: what a get or a subscribe asks for beyond the latest value of one path.

`parse_filters` turns a request's filter object(s) into one `Filters`, refusing with a VISS error
what the specification does not allow (at most one `paths` object plus one other; the
subscription triggers only on subscribe; history and metadata only on get). The triggers decide
when a subscription notifies: `Change` against the value last notified, `Range` on one or two
boundaries, `CurveLog` when its buffer is full, with the points a curve needs within `maxerr`.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass

import numpy as np

from .errors import VissError

LOGIC_OPS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
SUBSCRIBE_ONLY = ("timebased", "change", "range", "curvelog")
GET_ONLY = ("history", "static-metadata", "dynamic-metadata")
TYPES = ("paths", *SUBSCRIBE_ONLY, *GET_ONLY)
MIN_PERIOD_MS = 100
MAX_HISTORY_DAYS = 999  # "the number of days shall be less than 999"
MAX_CURVELOG_BUFFER = 10_000
# the VSS metadata keys a static-metadata request may select (the keys of the VSS JSON export)
STATIC_KEYS = (
    "type",
    "description",
    "comment",
    "datatype",
    "unit",
    "min",
    "max",
    "allowed",
    "default",
    "pattern",
    "deprecation",
)
DYNAMIC_KEYS = ("server_capabilities", "availability", "validate", "samplerate")
_PERIOD = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def _invalid(message: str) -> VissError:
    return VissError("bad_request", message)


@dataclass(frozen=True)
class Change:
    """Notify when `current - last notified` satisfies `logic_op` against `diff`; booleans count as 0 and 1,
    so {"logic-op": "gt", "diff": "0"} fires when a value goes false -> true."""

    logic_op: str
    diff: float

    def fires(self, last: object, new: object) -> bool:
        if last is None:
            return True  # the first value starts the subscription
        if isinstance(new, (int, float)) and isinstance(last, (int, float)):  # booleans too, as 0 and 1
            return LOGIC_OPS[self.logic_op](float(new) - float(last), self.diff)
        changed = new != last  # strings and arrays: only eq and ne have a meaning
        return not changed if self.logic_op == "eq" else changed

    def check(self, path: str, datatype: str) -> None:
        if not _numeric_type(datatype) and self.logic_op not in ("eq", "ne"):
            raise _invalid(
                f"{path} is {datatype}: a change filter on it takes logic-op eq or ne, not {self.logic_op!r}"
            )


@dataclass(frozen=True)
class Range:
    """Notify while the value satisfies one boundary, or two combined by AND (the default) or OR."""

    boundaries: tuple[tuple[str, float], ...]
    combination: str = "AND"

    def fires(self, last: object, new: object) -> bool:
        if not isinstance(new, (int, float)):
            return False
        results = [LOGIC_OPS[op](float(new), boundary) for op, boundary in self.boundaries]
        return all(results) if self.combination == "AND" else any(results)

    def check(self, path: str, datatype: str) -> None:
        if not _numeric_type(datatype):
            raise _invalid(f"{path} is {datatype}: a range filter applies to numeric signals only")


@dataclass(frozen=True)
class CurveLog:
    """Buffer `buffer_size` samples per signal, then send the points a piecewise-linear curve needs so
    that no buffered sample lies more than `max_error` (in the signal's unit) from it."""

    max_error: float
    buffer_size: int

    def check(self, path: str, datatype: str) -> None:
        if not _numeric_type(datatype):
            raise _invalid(f"{path} is {datatype}: curve logging applies to numeric signals only")


Trigger = Change | Range


@dataclass(frozen=True)
class Filters:
    paths: tuple[str, ...] | None = None
    period_s: float | None = None
    trigger: Trigger | None = None
    curvelog: CurveLog | None = None
    history_s: float | None = None
    static_metadata: tuple[str, ...] | None = None  # () selects every key
    dynamic_metadata: str | None = None


def parse_filters(raw: object, action: str) -> Filters:
    """The filter member of a get or subscribe (an object, a list of up to two, or either as a JSON string)."""
    if raw is None:
        return Filters()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
            raise _invalid(f"the filter must be a JSON object, got {raw!r}") from None
    items = raw if isinstance(raw, list) else [raw]
    found: dict[str, object] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _invalid('a filter is an object {"type": ..., "parameter": ...}')
        kind = item["type"]
        if kind not in TYPES:
            raise _invalid(f"filter type {kind!r} is not supported; the types are {', '.join(TYPES)}")
        if kind in found:
            raise _invalid(f"the filter has two {kind!r} objects; one of each type is allowed")
        found[kind] = item.get("parameter", item.get("value"))  # "value": the older drafts' name
    others = [kind for kind in found if kind != "paths"]
    if len(others) > 1:
        raise _invalid(f"one paths filter plus at most one other is allowed, not {' and '.join(others)}")
    for kind in others:
        allowed = SUBSCRIBE_ONLY if action == "subscribe" else GET_ONLY if action == "get" else ()
        if kind not in allowed:
            where = "subscribe" if kind in SUBSCRIBE_ONLY else "get"
            raise _invalid(f"the {kind} filter applies to {where} requests, not to {action}")
    parameter = found.get(others[0]) if others else None
    kind = others[0] if others else None
    return Filters(
        paths=_paths(found["paths"]) if "paths" in found else None,
        period_s=_period_s(parameter) if kind == "timebased" else None,
        trigger=_change(parameter) if kind == "change" else _range(parameter) if kind == "range" else None,
        curvelog=_curvelog(parameter) if kind == "curvelog" else None,
        history_s=history_seconds(parameter) if kind == "history" else None,
        static_metadata=_metadata_keys(parameter, STATIC_KEYS, "static") if kind == "static-metadata" else None,
        dynamic_metadata=_dynamic_key(parameter) if kind == "dynamic-metadata" else None,
    )


def _paths(parameter: object) -> tuple[str, ...]:
    paths = [parameter] if isinstance(parameter, str) else parameter
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise _invalid("a paths filter takes a relative path or a non-empty list of them")
    return tuple(paths)


def _period_s(parameter: object) -> float:
    period = parameter.get("period") if isinstance(parameter, dict) else None
    ms = _number(period, 'a timebased filter takes {"period": "<milliseconds>"}')
    if ms < MIN_PERIOD_MS:
        raise _invalid(f"the timebased period must be at least {MIN_PERIOD_MS} ms; got {period!r}")
    return ms / 1000


def _change(parameter: object) -> Change:
    usage = f'a change filter takes {{"logic-op": one of {", ".join(LOGIC_OPS)}, "diff": "<number>"}}'
    if not isinstance(parameter, dict) or parameter.get("logic-op") not in LOGIC_OPS or "diff" not in parameter:
        raise _invalid(f"{usage}; got {parameter!r}")
    return Change(parameter["logic-op"], _number(parameter["diff"], f"{usage}; diff {parameter['diff']!r}"))


def _range(parameter: object) -> Range:
    usage = (
        f'a range filter takes {{"boundary-op": one of {", ".join(LOGIC_OPS)}, "boundary": "<number>"}}, '
        'or a list of two such objects, the first with "combination-op": "AND" or "OR"'
    )
    objects = [o for o in (parameter if isinstance(parameter, list) else [parameter]) if isinstance(o, dict)]
    if len(objects) not in (1, 2) or len(objects) != (len(parameter) if isinstance(parameter, list) else 1):
        raise _invalid(f"{usage}; got {parameter!r}")
    boundaries = []
    for o in objects:
        op = o.get("boundary-op", o.get("logic-op"))  # "logic-op": the older drafts' name
        if op not in LOGIC_OPS or "boundary" not in o:
            raise _invalid(f"{usage}; got {o!r}")
        boundaries.append((op, _number(o["boundary"], f"{usage}; boundary {o['boundary']!r}")))
    combination = str(objects[0].get("combination-op", "AND")).upper()
    if combination not in ("AND", "OR"):
        raise _invalid(f"combination-op must be AND or OR; got {objects[0]['combination-op']!r}")
    return Range(tuple(boundaries), combination)


def _curvelog(parameter: object) -> CurveLog:
    usage = f'a curvelog filter takes {{"maxerr": "<number>", "bufsize": "<2..{MAX_CURVELOG_BUFFER}>"}}'
    if not isinstance(parameter, dict) or "maxerr" not in parameter or "bufsize" not in parameter:
        raise _invalid(f"{usage}; got {parameter!r}")
    max_error = _number(parameter["maxerr"], f"{usage}; maxerr {parameter['maxerr']!r}")
    size = _number(parameter["bufsize"], f"{usage}; bufsize {parameter['bufsize']!r}")
    if max_error < 0 or size != int(size) or not 2 <= size <= MAX_CURVELOG_BUFFER:
        raise _invalid(f"{usage}; got maxerr {parameter['maxerr']!r}, bufsize {parameter['bufsize']!r}")
    return CurveLog(max_error, int(size))


def history_seconds(period: object) -> float:
    """An ISO 8601 duration of days, hours, minutes and seconds (`PdddDThhHmmMssS`, e.g. P2DT12H) in seconds."""
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if match is None or not any(match.groups()) or str(period).endswith("T"):
        raise _invalid(
            f"a history filter takes an ISO 8601 period of days, hours, minutes and seconds "
            f"(PdddDThhHmmMssS, e.g. P2DT12H or PT10M; years, months and weeks are not exact), "
            f"got {period!r}"
        )
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    if days >= MAX_HISTORY_DAYS:
        raise _invalid(f"a history period must be shorter than {MAX_HISTORY_DAYS} days; got {period!r}")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise _invalid(f"a history period must be longer than zero; got {period!r}")
    return total


def _metadata_keys(parameter: object, allowed: tuple[str, ...], kind: str) -> tuple[str, ...]:
    keys = [] if parameter in ("", None) else [parameter] if isinstance(parameter, str) else parameter
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _invalid(f'a {kind}-metadata filter takes "" (every key), a key or a list of keys; got {parameter!r}')
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise _invalid(f"{unknown[0]!r} is not a {kind} metadata key; the keys are {', '.join(allowed)}")
    return tuple(dict.fromkeys(keys))


def _dynamic_key(parameter: object) -> str:
    keys = _metadata_keys(parameter, DYNAMIC_KEYS, "dynamic")
    if len(keys) != 1:
        raise _invalid(f"a dynamic-metadata filter takes one key ({', '.join(DYNAMIC_KEYS)}); got {parameter!r}")
    return keys[0]


def _number(raw: object, usage: str) -> float:
    try:
        value = float(raw) if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _invalid(usage)
    return value


def _numeric_type(datatype: str) -> bool:
    return datatype in ("boolean", "float", "double") or "int" in datatype and not datatype.endswith("[]")


def essential_points(times: list[float], values: list[float], max_error: float) -> list[int]:
    """Indexes (ascending, first and last included) of the samples a piecewise-linear curve through them
    needs so that every sample lies within `max_error` of it: Ramer-Douglas-Peucker on value over time."""
    t, v = np.asarray(times, float), np.asarray(values, float)
    keep, spans = {0, len(v) - 1}, [(0, len(v) - 1)]
    while spans:
        a, b = spans.pop()
        if b - a < 2:
            continue
        inner = slice(a + 1, b)
        width = t[b] - t[a]
        line = v[a] + (v[b] - v[a]) * ((t[inner] - t[a]) / width if width > 0 else 0.0)
        error = np.abs(v[inner] - line)
        k = int(np.argmax(error))
        if error[k] > max_error:
            keep.add(a + 1 + k)
            spans += [(a, a + 1 + k), (a + 1 + k, b)]
    return sorted(keep)
