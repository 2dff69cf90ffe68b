"""Counterexamples in the Informal Trace Format (ITF), the JSON trace format Apalache and Quint
read and write (https://apalache-mc.org/docs/adr/015adr-trace.html).

A trace is ``{"#meta": {...}, "vars": [...], "states": [{"#meta": {"index": i}, var: value,
...}], "loop": k}``. Values: booleans and strings as JSON; integers as ``{"#bigint": "n"}``;
sequences as JSON arrays; sets ``{"#set": [...]}``; tuples ``{"#tup": [...]}``; maps
``{"#map": [[key, value], ...]}``; records as JSON objects; variants (Quint's sum types) as
``{"tag": name, "value": v}``.

kvheal's view of a state (``KVHealModel.view``) maps as follows: ``stored`` is a set of ids;
``cache`` a sequence (it may hold duplicates); ``post``, ``poll``, ``alive``, ``lists`` and the
per-tab ``pending`` are maps from message or tab ids; with ``shared_pending``, ``pending`` is a
set; ``heal`` a map from ``m`` (or the tuple ``(t, m)``); phases are variants whose value is
``{}`` (no argument), the argument, or a tuple of arguments. Each state's ``#meta`` names the
step that led to it (``action``, ``args``). A lasso keeps the state where its loop returns:
the last state equals ``states[loop]``.

Pure: functions return values and strings; nothing here writes files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .trace import loop_start

FORMAT_URL = "https://apalache-mc.org/docs/adr/015adr-trace.html"

#: Phase arguments that are sets (ids in no order, no repeats): (field, tag) -> which arguments.
SET_ARGS: dict[tuple[str, str], tuple[int, ...]] = {
    ("sweep", "Listed"): (0,),
    ("sweep", "Read"): (0,),
    ("lists", "Write"): (0,),
}
#: Fields that are sets of ids; ``pending`` is one with shared_pending, else a map of sets.
SET_FIELDS = {"stored"}
#: Fields that are tuples indexed by a message or tab id: written as maps.
INDEXED = {"post", "poll", "alive", "lists", "pending"}


def _int(n: int) -> dict[str, str]:
    return {"#bigint": str(int(n))}


def _ids(values: Sequence[int], as_set: bool) -> Any:
    items = [_int(v) for v in values]
    return {"#set": sorted(items, key=lambda d: int(d["#bigint"]))} if as_set else items


def _is_phase(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and isinstance(value[0], str) and value[0][:1].isupper()


def _phase(field: str, value: tuple[Any, ...]) -> dict[str, Any]:
    tag, *args = value
    sets = SET_ARGS.get((field, tag), ())
    enc = [_ids(a, i in sets) if _is_ids(a) else encode_value(a) for i, a in enumerate(args)]
    if not enc:
        return {"tag": tag, "value": {}}
    return {"tag": tag, "value": enc[0] if len(enc) == 1 else {"#tup": enc}}


def _is_ids(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def encode_value(value: Any, field: str = "") -> Any:
    """One value of a view as an ITF value (``field`` picks the reading of tuples of ids)."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _int(value)
    if _is_phase(value):
        return _phase(field, value)
    if isinstance(value, Mapping):
        return {"#map": [[encode_value(k), encode_value(v, field)] for k, v in value.items()]}
    if isinstance(value, tuple) and _is_ids(value):
        return _ids(value, field in SET_FIELDS)
    if isinstance(value, tuple):
        return {"#tup": [encode_value(v, field) for v in value]}
    return {"#unserializable": repr(value)}


def encode_state(view: Mapping[str, Any]) -> dict[str, Any]:
    """A view as an ITF state (without ``#meta``), variables in the view's order."""
    shared = "lists" in view
    out: dict[str, Any] = {}
    for name, value in view.items():
        if name == "pending" and shared:
            out[name] = _ids(value, True)
        elif name == "pending":
            out[name] = {"#map": [[_int(t), _ids(p, True)] for t, p in enumerate(value)]}
        elif name in INDEXED and isinstance(value, tuple):
            out[name] = {"#map": [[_int(i), encode_value(v, name)] for i, v in enumerate(value)]}
        else:
            out[name] = encode_value(value, name)
    return out


def to_itf(
    trace: Sequence[Mapping[str, Any]],
    views: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ITF object of a counterexample: ``views`` are the states it visits (one more than
    steps); ``meta`` is merged into the trace's ``#meta`` (design, property, version...)."""
    if len(views) != len(trace) + 1:
        raise ValueError(f"{len(trace)} steps need {len(trace) + 1} views, got {len(views)}")
    states = []
    for i, view in enumerate(views):
        st_meta: dict[str, Any] = {"index": i}
        if i:
            step = trace[i - 1]
            st_meta["action"] = step["action"]
            st_meta["args"] = {k: int(v) for k, v in step.get("args", {}).items()}
        states.append({"#meta": st_meta, **encode_state(view)})
    obj: dict[str, Any] = {
        "#meta": {
            "format": "ITF",
            "format-description": FORMAT_URL,
            "source": "kvheal",
            **(dict(meta) if meta else {}),
        },
        "vars": list(views[0].keys()),
        "states": states,
    }
    loop = loop_start(list(trace))
    if loop is not None:
        obj["loop"] = loop
    return obj


def dumps(obj: Mapping[str, Any]) -> str:
    """An ITF object as text (one state per line, so diffs stay readable)."""
    head = {k: v for k, v in obj.items() if k != "states"}
    states = ",\n    ".join(json.dumps(s, ensure_ascii=False) for s in obj["states"])
    body = json.dumps(head, ensure_ascii=False, indent=2)[:-2]
    return body + ',\n  "states": [\n    ' + states + "\n  ]\n}\n"


def itf_outputs(path: str, model: Any, result: Any, meta: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``path -> text`` of the ITF files of a check's counterexamples: ``path`` itself when one
    property is violated, else one file per violated property with its name before the
    extension (``cex.itf.json`` -> ``cex.Converges.itf.json``). Empty when nothing is violated."""
    from .render import trace_views

    violated = [(n, p) for n, p in result.properties.items() if p.status == "violated"]
    out: dict[str, str] = {}
    for name, p in violated:
        target = path if len(violated) == 1 else _with_name(path, name)
        m = {
            "design": model.config.variant_label(),
            "tabs": model.config.tabs,
            "per_tab": model.config.per_tab,
            "cap": model.config.cap,
            "property": name,
            **(dict(meta) if meta else {}),
        }
        out[target] = dumps(to_itf(p.trace, trace_views(model, p.trace), m))
    return out


def _with_name(path: str, name: str) -> str:
    slash = path.rfind("/") + 1
    dot = path.find(".", slash + 1)
    return f"{path}.{name}" if dot < 0 else f"{path[:dot]}.{name}{path[dot:]}"


# -- decoding and validation ---------------------------------------------------------------------


def decode_value(value: Any) -> Any:
    """An ITF value as Python: ints, tuples (sequences, tuples; sets sorted), dicts (maps and
    records) and phases as ``(tag, *args)``."""
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, list):
        return tuple(decode_value(v) for v in value)
    if "#bigint" in value:
        return int(value["#bigint"])
    if "#set" in value:
        return tuple(sorted((decode_value(v) for v in value["#set"]), key=repr))
    if "#tup" in value:
        return tuple(decode_value(v) for v in value["#tup"])
    if "#map" in value:
        return {decode_value(k): decode_value(v) for k, v in value["#map"]}
    if "tag" in value and set(value) == {"tag", "value"}:
        inner = value["value"]
        if inner == {}:
            return (value["tag"],)
        if isinstance(inner, dict) and "#tup" in inner:
            return (value["tag"], *decode_value(inner))
        return (value["tag"], decode_value(inner))
    return {k: decode_value(v) for k, v in value.items()}


def decode_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """An ITF state written by :func:`encode_state` back as a view (maps over 0..n-1 of the
    indexed fields become tuples again)."""
    out = {}
    for name, value in state.items():
        if name == "#meta":
            continue
        v = decode_value(value)
        if name in INDEXED and isinstance(v, dict):
            v = tuple(v[i] for i in range(len(v)))
        out[name] = v
    return out


_BIGINT = re.compile(r"-?(0|[1-9][0-9]*)")
MAX_SAFE = 2**53 - 1


def validate(obj: Any) -> list[str]:
    """Every way ``obj`` breaks the ITF rules (ADR-015), as messages; empty when it is valid.

    Checked: the top level (``vars`` unique strings, ``states`` a list, optional ``#meta``
    object, ``params`` strings, ``loop`` an index into ``states``); every state an object with
    exactly the variables (plus ``#meta``, whose ``index``, if any, is its position); every
    value well formed (``#bigint`` a decimal string, ``#tup``/``#set`` arrays, ``#map`` an
    array of pairs, a variant exactly ``tag``/``value``, plain integers within ±(2^53-1), no
    floats or nulls, no repeated set elements or map keys, record fields not starting with
    ``#``).
    """
    errs: list[str] = []
    if not isinstance(obj, dict):
        return ["the trace is not a JSON object"]
    extra = set(obj) - {"#meta", "params", "vars", "states", "loop"}
    if extra:
        errs.append(f"unknown top-level fields {sorted(extra)}")
    if "#meta" in obj and not isinstance(obj["#meta"], dict):
        errs.append("#meta is not an object")
    if "params" in obj and not (
        isinstance(obj["params"], list) and all(isinstance(p, str) for p in obj["params"])
    ):
        errs.append("params is not a list of strings")
    variables = obj.get("vars")
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        errs.append("vars is missing or not a list of strings")
        variables = []
    elif len(set(variables)) != len(variables):
        errs.append("vars has duplicates")
    states = obj.get("states")
    if not isinstance(states, list):
        return [*errs, "states is missing or not a list"]
    if "loop" in obj:
        loop = obj["loop"]
        if isinstance(loop, bool) or not isinstance(loop, int) or not 0 <= loop < len(states):
            errs.append(f"loop {loop!r} is not an index into states")
    expected = set(variables) | set(obj.get("params", []))
    for i, st in enumerate(states):
        where = f"states[{i}]"
        if not isinstance(st, dict):
            errs.append(f"{where} is not an object")
            continue
        meta = st.get("#meta", {})
        if not isinstance(meta, dict):
            errs.append(f"{where}.#meta is not an object")
        elif "index" in meta and meta["index"] != i:
            errs.append(f"{where}.#meta.index is {meta['index']!r}")
        keys = set(st) - {"#meta"}
        if keys != expected:
            errs.append(f"{where} has variables {sorted(keys)}, expected {sorted(expected)}")
        for k in sorted(keys):
            errs += _check_value(st[k], f"{where}.{k}")
    return errs


def _check_value(v: Any, where: str) -> list[str]:
    if v is None:
        return [f"{where}: null is not an ITF value"]
    if isinstance(v, float):
        return [f"{where}: floats are not ITF values"]
    if isinstance(v, bool) or isinstance(v, str):
        return []
    if isinstance(v, int):
        return [] if abs(v) <= MAX_SAFE else [f"{where}: integer beyond 2^53 must be a #bigint"]
    if isinstance(v, list):
        return [e for i, x in enumerate(v) for e in _check_value(x, f"{where}[{i}]")]
    if not isinstance(v, dict):
        return [f"{where}: {type(v).__name__} is not an ITF value"]
    special = [k for k in v if k.startswith("#")]
    if special:
        if len(v) != 1:
            return [f"{where}: {special[0]} must be the object's only field"]
        k = special[0]
        body = v[k]
        if k == "#bigint":
            return (
                []
                if isinstance(body, str) and _BIGINT.fullmatch(body)
                else [f"{where}: bad #bigint {body!r}"]
            )
        if k == "#unserializable":
            return [] if isinstance(body, str) else [f"{where}: #unserializable is not a string"]
        if k in ("#tup", "#set"):
            if not isinstance(body, list):
                return [f"{where}: {k} is not an array"]
            errs = [e for i, x in enumerate(body) for e in _check_value(x, f"{where}.{k}[{i}]")]
            if k == "#set" and len({_canon(x) for x in body}) != len(body):
                errs.append(f"{where}: #set has repeated elements")
            return errs
        if k == "#map":
            if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2 for p in body):
                return [f"{where}: #map is not an array of [key, value] pairs"]
            errs = [
                e
                for i, (a, b) in enumerate(body)
                for e in _check_value(a, f"{where}.#map[{i}].key")
                + _check_value(b, f"{where}.#map[{i}].value")
            ]
            if len({_canon(p[0]) for p in body}) != len(body):
                errs.append(f"{where}: #map has repeated keys")
            return errs
        return [f"{where}: unknown special field {k}"]
    if "tag" in v and "value" in v and len(v) == 2:
        if not isinstance(v["tag"], str):
            return [f"{where}: a variant's tag is not a string"]
        return _check_value(v["value"], f"{where}.value")
    return [e for k, x in v.items() for e in _check_value(x, f"{where}.{k}")]


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True)
