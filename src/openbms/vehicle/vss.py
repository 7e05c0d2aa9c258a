"""The VSS 6.0 signal catalogue this BMS serves, read from VSS itself, and the rules every value must meet.

The tree is COVESA VSS 6.0's own `Vehicle.Powertrain.TractionBattery` branch, extracted from the
official JSON export (`data/vss-6.0-traction-battery.json`; `data/README.md` says how), so names,
types, datatypes, units, ranges and allowed values are exactly VSS's; `data/openbms-overlay.json`
adds, in the same JSON shape, what VSS 6.0 lacks and this BMS publishes, under
`…TractionBattery.OpenBMS`. Every node of the branch is served: static metadata describes the
whole branch; the signals the BMS never publishes read as unavailable.

Wire values follow VISS v2: every value travels as a string (arrays as lists of strings);
`coerce` turns a wire or Python value into the catalogue's Python type and refuses anything
that does not fit, with a message that names the path and the rule.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources

ROOT = "Vehicle.Powertrain.TractionBattery"
MAX_PATH_LENGTH = 256
VSS_FILE = "vss-6.0-traction-battery.json"
OVERLAY_FILE = "openbms-overlay.json"
_WIRE_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # JSON's number grammar, nothing else

_INT_RANGES = {
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


class UnknownPath(LookupError):
    """A path that is not in the catalogue (VISS 404)."""

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidValue(ValueError):
    """A value that does not fit its signal's datatype, range or allowed values (VISS 400)."""


@dataclass(frozen=True)
class Node:
    path: str
    meta: dict = field(compare=False, repr=False)  # the node's VSS JSON entry, without its children
    children: tuple[str, ...] = field(default=(), compare=False)

    @property
    def type(self) -> str:  # branch | sensor | actuator | attribute
        return self.meta["type"]

    @property
    def datatype(self) -> str | None:
        return self.meta.get("datatype")

    @property
    def unit(self) -> str | None:
        return self.meta.get("unit")

    @property
    def min(self) -> float | None:
        return self.meta.get("min")

    @property
    def max(self) -> float | None:
        return self.meta.get("max")

    @property
    def allowed(self) -> tuple[str, ...] | None:
        return tuple(self.meta["allowed"]) if "allowed" in self.meta else None

    @property
    def is_leaf(self) -> bool:
        return self.type != "branch"

    def metadata(self) -> dict:
        """VSS static metadata, as in the VSS JSON export."""
        return dict(self.meta)


def branch_of(tree: dict, path: str) -> dict:
    """The subtree at `path` of a VSS JSON tree, under the branches above it (their own entries, without
    their other children): how `data/vss-6.0-traction-battery.json` is cut from the official export."""
    names = path.split(".")
    cut: dict = {}
    source, target = tree, cut
    for depth, name in enumerate(names):
        entry = source[name]
        if depth == len(names) - 1:
            target[name] = entry
        else:
            target[name] = {**{k: v for k, v in entry.items() if k != "children"}, "children": {}}
            source, target = entry["children"], target[name]["children"]
    return cut


def overlay(tree: dict, layer: dict) -> dict:
    """A VSS JSON tree with an overlay in the same shape laid over it (VSS layering): the overlay's keys
    replace the tree's, its children are laid over the tree's children, new nodes are added."""
    merged = dict(tree)
    for name, entry in layer.items():
        base = dict(merged.get(name, {}))
        children = overlay(base.get("children", {}), entry.get("children", {}))
        base.update({k: v for k, v in entry.items() if k != "children"})
        if children:
            base["children"] = children
        merged[name] = base
    return merged


def load(vss_tree: dict, layer: dict) -> dict[str, Node]:
    """Every node of the overlaid tree by path, parents before children, siblings in file order."""
    nodes: dict[str, Node] = {}

    def walk(entries: dict, prefix: str) -> None:
        for name, entry in entries.items():
            path = f"{prefix}.{name}" if prefix else name
            children = entry.get("children", {})
            nodes[path] = Node(
                path,
                {k: v for k, v in entry.items() if k != "children"},
                tuple(f"{path}.{child}" for child in children),
            )
            walk(children, path)

    walk(overlay(vss_tree, layer), "")
    return nodes


def _data(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8"))


CATALOGUE: dict[str, Node] = load(_data(VSS_FILE), _data(OVERLAY_FILE))
LEAVES: tuple[str, ...] = tuple(path for path, n in CATALOGUE.items() if n.is_leaf)
_ORDER = {leaf: k for k, leaf in enumerate(LEAVES)}
# What the read-only `health` purpose covers: state of health by capacity and resistance, and the record.
HEALTH_LEAVES: tuple[str, ...] = (
    f"{ROOT}.StateOfHealth",
    f"{ROOT}.OpenBMS.ResistanceHealth",
    *(p for p in LEAVES if p.startswith(f"{ROOT}.OpenBMS.Health.")),
)


def normalize_path(path: object) -> str:
    """VISS allows `/` or `.` as separator; the catalogue uses `.`."""
    if not isinstance(path, str) or not path:
        raise InvalidValue(f"path must be a non-empty string, got {path!r}")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidValue(f"path is {len(path)} characters long; at most {MAX_PATH_LENGTH} are accepted")
    return path.strip("/").replace("/", ".")


def request_path(path: object) -> str:
    """The path of a request: `normalize_path`, refusing wildcards (VISS: they belong in a paths filter)."""
    normalized = normalize_path(path)
    if "*" in normalized:
        raise InvalidValue(
            f"a request path must not contain wildcards (*), got {path!r}: address the branch and put "
            'the pattern in a paths filter, e.g. {"type": "paths", "parameter": "*.Min"}'
        )
    return normalized


def node(path: str) -> Node:
    try:
        return CATALOGUE[path]
    except KeyError:
        raise UnknownPath(f"{path!r} is not a signal or branch of this vehicle (see {ROOT})") from None


def covers(scope_path: str, path: str) -> bool:
    """A branch covers itself and every node below it."""
    return path == scope_path or path.startswith(scope_path + ".")


def leaves_under(path: str) -> list[str]:
    """The leaves a path stands for: itself, every leaf below a branch, or the leaves matching `*` segments."""
    if "*" in path:
        pattern = path.split(".")
        found = [
            p
            for p in CATALOGUE
            if len(p.split(".")) == len(pattern)
            and all(fnmatch.fnmatchcase(s, q) for s, q in zip(p.split("."), pattern))
        ]
        if not found:
            raise UnknownPath(f"no signal matches {path!r}")
        return sorted({leaf for p in found for leaf in leaves_under(p)}, key=_ORDER.__getitem__)
    node(path)
    return [leaf for leaf in LEAVES if covers(path, leaf)]


def select(path: str, relative_paths: list[str] | None = None) -> list[str]:
    """The leaves of a request: `path`, or with a VISS `paths` filter, each relative path below it."""
    if relative_paths is None:
        return leaves_under(path)
    if not isinstance(relative_paths, list) or not relative_paths:
        raise InvalidValue("a 'paths' filter value must be a non-empty list of paths relative to the request path")
    selected: list[str] = []
    for relative in relative_paths:
        for leaf in leaves_under(f"{path}.{normalize_path(relative)}"):
            if leaf not in selected:
                selected.append(leaf)
    return selected


def coerce(path: str, value: object) -> object:
    """The value as the signal's Python type (wire strings accepted), or InvalidValue naming the rule broken."""
    n = node(path)
    if not n.is_leaf:
        raise InvalidValue(f"{path} is a branch; only its signals carry values")
    if n.datatype.endswith("[]"):
        if not isinstance(value, (list, tuple)):
            raise InvalidValue(f"{path} is {n.datatype}: expected a list, got {value!r}")
        return [_scalar(n, n.datatype[:-2], item) for item in value]
    return _scalar(n, n.datatype, value)


def _scalar(n: Node, datatype: str, value: object) -> object:
    expected = f"{n.path} is {datatype}"
    if datatype == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidValue(f"{expected}: expected true or false, got {value!r}")
    if datatype == "string":
        if not isinstance(value, str):
            raise InvalidValue(f"{expected}: expected a string, got {value!r}")
        if n.allowed and value not in n.allowed:
            raise InvalidValue(f"{n.path} accepts {', '.join(n.allowed)}; got {value!r}")
        return value
    number = _number(value, expected)
    if datatype in _INT_RANGES:
        if isinstance(number, float):
            if number != int(number):
                raise InvalidValue(f"{expected}: expected a whole number, got {value!r}")
            number = int(number)
        low, high = _INT_RANGES[datatype]
        if not low <= number <= high:
            raise InvalidValue(f"{expected}: {_short(number)} is outside [{low}, {high}]")
    else:
        try:
            number = float(number)
        except OverflowError:
            raise InvalidValue(f"{expected}: {_short(number)} is beyond any {datatype}") from None
    if (n.min is not None and number < n.min) or (n.max is not None and number > n.max):
        unit = f" {n.unit}" if n.unit else ""
        low, high = ("-inf" if n.min is None else f"{n.min:g}"), ("inf" if n.max is None else f"{n.max:g}")
        raise InvalidValue(f"{n.path} must be within [{low}, {high}]{unit}; got {value!r}")
    return number


def _number(value: object, expected: str) -> int | float:
    """A finite number from a JSON number or a wire string written as one ("8_0", " 80 ", "0x50", "NaN" are
    not); whole numbers stay exact ints, so a 400-digit one is refused by range, not by overflow."""
    if isinstance(value, str):
        if len(value) > 64 or not _WIRE_NUMBER.fullmatch(value):
            raise InvalidValue(
                f"{expected}: expected a finite number as JSON writes one (80, -2.5, 1e3), got {_short(value)}"
            )
        number: int | float = int(value) if value.lstrip("-").isdigit() else float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    else:
        raise InvalidValue(f"{expected}: expected a number, got {_short(value)}")
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidValue(f"{expected}: expected a finite number, got {_short(value)}")
    return number


def _short(value: object) -> str:
    """A value as an error message can quote it: long ones cut, huge whole numbers by their size."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_wire(value: object) -> object:
    """VISS v2 carries values as strings, arrays as lists of strings."""
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def metadata(path: str, keys: tuple[str, ...] | None = None, only: list[str] | None = None) -> dict:
    """Static metadata of a node and, for a branch, of its subtree, keyed by name as in VSS JSON: every key, or
    the `keys` asked for; every node, or those on the way to the leaves `only` (a paths filter selects)."""
    n = node(path)
    meta = {key: value for key, value in n.metadata().items() if keys is None or key in keys}
    if not n.is_leaf:
        meta["children"] = {
            child.rpartition(".")[2]: metadata(child, keys, only)[child.rpartition(".")[2]]
            for child in n.children
            if only is None or any(covers(child, leaf) for leaf in only)
        }
    return {path.rpartition(".")[2]: meta}
