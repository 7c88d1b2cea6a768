"""The schema's error half: every operation may answer application/problem+json (RFC 9457), and
says so, so clients (and the fuzzer) can check every 4xx against it."""

from __future__ import annotations

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "reason"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "reason": {"type": "string", "description": "A short code, e.g. not_found, invalid, throttled."},
        "errors": {"type": ["object", "array"], "description": "Per field, when the body was invalid."},
    },
}


def add_problem_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: a Problem component and a `default` response on every
    operation (the statuses an operation documents keep their own schema)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    problem = {"description": "An error (RFC 9457 problem details).",
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("default", problem)
    return result
