"""Validation of custom resources against a CRD's structural schema, the way the API server and
kubectl do it, without a cluster:

1. the `openAPIV3Schema` as JSON Schema (jsonschema's draft 4, which OpenAPI 3.0 schemas follow),
   with `nullable`, `x-kubernetes-int-or-string` and kubectl's strict field validation (an
   unknown field is an error) translated;
2. the schema's defaults applied (structural defaulting, as the API server does before it
   validates);
3. the `x-kubernetes-validations` CEL rules evaluated on the defaulted object (cel-python).

What it does not do: ObjectMeta's own checks (name syntax), formats (int32, date-time) and
transition rules (`oldSelf`); the CRD under test uses none of the latter.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import celpy
import jsonschema


@dataclass(frozen=True)
class Violation:
    path: str  # e.g. spec.replication.mode
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def version_schema(crd: dict, version: str) -> dict:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version}")


def _children(schema: dict):
    """(key kind, key, child schema) of every sub-schema."""
    for name, sub in schema.get("properties", {}).items():
        yield "property", name, sub
    if isinstance(schema.get("items"), dict):
        yield "items", None, schema["items"]
    if isinstance(schema.get("additionalProperties"), dict):
        yield "additionalProperties", None, schema["additionalProperties"]
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key, [])):
            yield key, i, sub
    if isinstance(schema.get("not"), dict):
        yield "not", None, schema["not"]


def to_json_schema(schema: dict) -> dict:
    """A JSON Schema (draft 4) equivalent to a structural OpenAPI v3 schema."""
    out = {k: v for k, v in schema.items()
           if k not in ("properties", "items", "additionalProperties", "allOf", "anyOf",
                        "oneOf", "not")}
    for kind, key, sub in _children(schema):
        converted = to_json_schema(sub)
        if kind == "property":
            out.setdefault("properties", {})[key] = converted
        elif kind in ("allOf", "anyOf", "oneOf"):
            out.setdefault(kind, []).append(converted)
        else:
            out[kind] = converted
    if "additionalProperties" in schema and not isinstance(schema["additionalProperties"], dict):
        out["additionalProperties"] = schema["additionalProperties"]
    if schema.get("x-kubernetes-int-or-string") and "type" not in schema:
        out["type"] = ["integer", "string"]
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False  # kubectl --validate=strict, the default
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [*(out["type"] if isinstance(out["type"], list) else [out["type"]]),
                           "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def object_schema(crd: dict, version: str) -> dict:
    """The JSON Schema of a whole object of the CRD's `version`: apiVersion, kind and metadata,
    which the API server checks itself, plus the version's schema."""
    schema = to_json_schema(version_schema(crd, version))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema.setdefault("properties", {}).update({
        "apiVersion": {"enum": [f"{group}/{version}"]},
        "kind": {"enum": [kind]},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string", "minLength": 1},
                                    "namespace": {"type": "string", "minLength": 1}}},
    })
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    return schema


def apply_defaults(schema: dict, value):
    """Structural defaulting: a missing property with a default gets it, recursively."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                if key not in schema.get("properties", {}):
                    apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


_CEL = celpy.Environment()


@functools.cache
def _program(rule: str):
    return _CEL.program(_CEL.compile(rule))


def cel_violations(schema: dict, value, path: str) -> list[Violation]:
    found = []
    if value is None:
        return found
    for v in schema.get("x-kubernetes-validations", []):
        assert "oldSelf" not in v["rule"], "transition rules are not supported here"
        try:
            result = _program(v["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as e:  # the API server rejects an object whose rule errs
            result = e
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            where = path + v.get("fieldPath", "")
            found.append(Violation(where, v.get("message") or f"failed rule: {v['rule']}"))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += cel_violations(sub, value[name], f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += cel_violations(schema["items"], item, f"{path}[{i}]")
    return found


def violations(crd: dict, obj: dict, version: str = "v1alpha1") -> list[Violation]:
    """Everything the API server (with kubectl's strict field validation) would reject in `obj`.
    Schema errors first; CEL rules only on an object that passes the schema, as the API server
    does."""
    validator = jsonschema.Draft4Validator(object_schema(crd, version))
    errors = [Violation(".".join(str(p) for p in e.absolute_path) or "<root>", e.message)
              for e in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])]
    if errors:
        return errors
    defaulted = apply_defaults(version_schema(crd, version), copy.deepcopy(obj))
    return [Violation(v.path.lstrip("."), v.message)
            for v in cel_violations(version_schema(crd, version), defaulted, "")]
