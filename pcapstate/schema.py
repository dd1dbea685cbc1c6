"""The JSON result's schema (`pcapstate-result/3`, docs/json.md) and the check that
`pcapstate report` runs on a saved result before rendering it.

A result that parses may still be damaged or hand-edited: a count that is a string, a
timestamp of 1e300 (a report cannot draw the year 10^292), a peer without a port, a key
gone, a list where an object goes. `problem(result)` names the first such field by its
JSON path (`findings[0].count: expected a whole number (0 or more), got "many"`), in the
order the result's fields are written (analyze's order), so the report fails in one line
instead of a traceback.

The schema is `result.schema.json` beside this file: JSON Schema, draft 2020-12. Keys it
does not name are allowed, as new fields may be added within a version. Each value's
`title` is what the message says was expected. A test validates the result of every sample
so that the schema cannot drift from what analyze writes, and checks its enumerations
against pcapstate/vocab.py. Nothing here imports the engine; jsonschema is imported on the
first check, not with this module.
"""

# A standard JSON Schema checked by the jsonschema library, rather than a schema language
# and validator of our own: users can validate results with the same file, in any language.

import json
import math
import re
from functools import cache
from importlib.resources import files
from typing import Any

#: The result's schema and version: `schema` in every result. 2: a connection ended by a
#: RST without a FIN first has the RST's sender for its closer (1: none), and `closed_by`.
#: 3: a closer inferred from a RST that answered a FIN is the RST's sender (2: the FIN's),
#: and how each closer is known (`closer_evidence`), inferred findings, counts at capture end.
SCHEMA = "pcapstate-result/3"
#: The versions a report reads (a version 1 result's closers of resets read "none"; one
#: before 3 has no closer evidence, inferred findings or counts at capture end).
READS = ("pcapstate-result/1", "pcapstate-result/2", SCHEMA)

#: JSON's kinds of value, as a message names them.
_KINDS = {"object": "an object", "array": "a list", "string": "a string",
          "boolean": "true or false", "integer": "a whole number", "number": "a number",
          "null": "null"}


def _integer(_checker: Any, v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(_checker: Any, v: Any) -> bool:
    return _integer(_checker, v) or (isinstance(v, float) and math.isfinite(v))


@cache
def _validator() -> Any:
    """The schema's validator. Stricter than the standard in two kinds of value: a count
    written 5.0 (JSON Schema's integer; not what analyze writes, nor what a report can count
    with) is not a whole number, and NaN and Infinity (not JSON; Python's json reads them)
    are not numbers."""
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _integer, "number": _number})
    strict = validators.extend(Draft202012Validator, type_checker=types)
    doc = json.loads(files("pcapstate").joinpath("result.schema.json").read_text("utf-8"))
    return strict(_inline(doc, doc.pop("$defs")))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with each `{"$ref": "#/$defs/name"}` replaced by the definition: the same
    schema, checked about 4 times as fast (jsonschema looks a reference up at every use)."""
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    return {k: _inline(v, defs) for k, v in node.items()}


def problem(result: Any) -> str | None:
    """The first thing wrong with a saved result, as `path: what` (one line); None when it
    fits the schema."""
    errors = list(_causes(_validator().iter_errors(result)))
    if errors:
        return _line(min(errors, key=lambda e: _place(result, e)))
    conns = result["connections"]
    for kind in conns["by_end"]:  # one field's keys among another's: not JSON Schema's to say
        if kind not in conns["by_end_and_closer"]:
            return (f"connections.by_end_and_closer: missing {json.dumps(kind)}, which "
                    "connections.by_end counts")
    return None


def _causes(errors: Any) -> Any:
    """The errors, each nullable value's (`anyOf` null or a value) as what the value lacks."""
    for e in errors:
        if e.validator == "anyOf":
            yield from _causes(c for c in e.context if c.schema != {"type": "null"})
        else:
            yield e


def _field(error: Any) -> list[str | int]:
    """The JSON path of the field an error names: a missing key's, a refused key's own."""
    path = list(error.absolute_path)
    if error.validator == "required":
        path.append(next(k for k in error.validator_value if k not in error.instance))
    elif "propertyNames" in error.absolute_schema_path:
        path.append(error.instance)
    return path


def _place(result: Any, error: Any) -> list[float]:
    """Where an error's field comes in the result as written: at each level its index in
    the list, or its key's in the object (a missing key's: just before the first key written
    that the schema puts after it)."""
    place: list[float] = []
    node = result
    for part in _field(error):
        if isinstance(part, int):
            place.append(part)
        elif part in node:
            place.append(list(node).index(part))
        else:  # a missing key (the last part): before the next key the schema names
            keys = list(error.schema["properties"])
            after = [list(node).index(k) for k in keys[keys.index(part):] if k in node]
            place.append(min(after, default=len(node)) - 0.5)
            break
        node = node[part]
    return place


def _line(error: Any) -> str:
    """An error as `path: what was expected, got what`."""
    schema, value = error.schema, error.instance
    if error.validator == "required":
        what = "missing"
    elif error.validator in ("minItems", "maxItems"):
        n = error.validator_value
        what = (f"expected at {'least' if error.validator == 'minItems' else 'most'} {n:,} "
                f"item{'s' if n != 1 else ''}, got {len(value):,}")
    else:
        expected = schema.get("title") or (_KINDS[error.validator_value]
                                           if error.validator == "type" else error.message)
        if "enum" in schema:
            expected += f" ({', '.join(map(str, schema['enum']))})"
        if "propertyNames" in error.absolute_schema_path:
            expected = f"a key that is {expected}"
        what = f"expected {expected}, got {shown(value)}"
    where = json_path(_field(error))
    return f"{where}: {what}" if where else what


def json_path(parts: list[str | int]) -> str:
    """findings[0].examples[2].peer; a key that is not a name is quoted: histogram["-1"]."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p)}]"
    return out


def shown(v: Any) -> str:
    """A value as a message shows it: as JSON, short; an object or a list by its kind."""
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    text = json.dumps(v)  # NaN, Infinity and 1e+300 as Python's json reads them
    return text if len(text) <= 40 else text[:37] + "..."
