"""The campaign label schema: voxel classes and scan-level label choices.

Shape::

    {"classes": [{"value": 1, "name": "ground-glass opacity", "color": "#e6b422"}, ...],
     "scan_labels": [{"key": "diagnosis", "name": "Diagnosis", "required": true,
                      "choices": ["COVID-19", ...]}]}

Value 0 is always background and is never listed.
"""

from __future__ import annotations

import re
from typing import Any

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")

COVID19_SCHEMA: dict[str, Any] = {
    "classes": [
        {"value": 1, "name": "ground-glass opacity", "color": "#f2c14e"},
        {"value": 2, "name": "consolidation", "color": "#e4572e"},
        {"value": 3, "name": "other opacity", "color": "#4ea5d9"},
    ],
    "scan_labels": [
        {
            "key": "diagnosis",
            "name": "Diagnosis",
            "required": True,
            "choices": ["COVID-19", "other pulmonary infection", "no imaging signs of infection"],
        }
    ],
}


def validate_label_schema(schema: Any) -> None:
    """Raise ValueError with a reason a person can act on."""
    if not isinstance(schema, dict):
        raise ValueError("the label schema must be an object with 'classes' and 'scan_labels'")
    classes = schema.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ValueError("the label schema needs at least one voxel class")
    seen_values: set[int] = set()
    for cls in classes:
        if not isinstance(cls, dict):
            raise ValueError("each class must be an object with value, name and color")
        value = cls.get("value")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 255:
            raise ValueError(f"class value {value!r} must be an integer from 1 to 255 (0 is background)")
        if value in seen_values:
            raise ValueError(f"class value {value} is listed twice")
        seen_values.add(value)
        if not isinstance(cls.get("name"), str) or not cls["name"].strip():
            raise ValueError(f"class {value} needs a name")
        if not isinstance(cls.get("color"), str) or not COLOR_RE.match(cls["color"]):
            raise ValueError(f"class {value} needs a colour like #ff8800")
    scan_labels = schema.get("scan_labels", [])
    if not isinstance(scan_labels, list):
        raise ValueError("'scan_labels' must be a list")
    keys: set[str] = set()
    for label in scan_labels:
        if not isinstance(label, dict) or not isinstance(label.get("key"), str) or not label["key"]:
            raise ValueError("each scan label needs a key")
        if label["key"] in keys:
            raise ValueError(f"scan label {label['key']!r} is listed twice")
        keys.add(label["key"])
        choices = label.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise ValueError(f"scan label {label['key']!r} needs a non-empty list of text choices")


def class_values(schema: dict[str, Any]) -> set[int]:
    return {int(c["value"]) for c in schema["classes"]}


def validate_scan_labels(schema: dict[str, Any], labels: Any, *, require_complete: bool) -> dict[str, str]:
    """Check scan-level labels against the schema; unknown keys and choices are refused."""
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise ValueError("scan labels must be an object of key → choice")
    known = {entry["key"]: entry for entry in schema.get("scan_labels", [])}
    for key, value in labels.items():
        if key not in known:
            raise ValueError(f"unknown scan label {key!r}; the campaign has {sorted(known)}")
        if value not in known[key]["choices"]:
            raise ValueError(f"{value!r} is not a choice of {key!r}: {known[key]['choices']}")
    if require_complete:
        missing = [k for k, e in known.items() if e.get("required", True) and k not in labels]
        if missing:
            raise ValueError(f"set the scan labels {missing} before submitting")
    return dict(labels)
