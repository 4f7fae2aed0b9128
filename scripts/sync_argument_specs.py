"""Bring roles/django_celery/meta/argument_specs.yml in line with defaults/main.yml.

defaults/main.yml is where a variable is born: its default and, in the comment above it, its
description. This script copies both (and a type read from the default) into the argument
specs, keeping what only the specs hold (choices, elements, options, no_log, a type given by
hand), then rewrites the README's variable table. tests/test_docs.py checks all three agree.

    python scripts/sync_argument_specs.py
"""

from __future__ import annotations

import re
from pathlib import Path

import variables_table
import yaml

ROLE = Path(__file__).resolve().parent.parent / "roles" / "django_celery"
DEFAULTS = ROLE / "defaults" / "main.yml"
SPECS = ROLE / "meta" / "argument_specs.yml"
TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}


class IndentedDumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def described_defaults() -> dict[str, tuple[object, str]]:
    text = DEFAULTS.read_text()
    values = yaml.safe_load(text)
    found, comment = {}, []
    for line in text.splitlines():
        if line.startswith("# ---"):
            comment = []
        elif line.startswith("#"):
            comment.append(line[1:].strip())
        elif match := re.match(r"^(django_celery_\w+):", line):
            found[match.group(1)] = (values[match.group(1)], " ".join(comment))
            comment = []
        elif not line.strip():
            comment = []
    return found


def main() -> None:
    text = SPECS.read_text()
    header = text.split("argument_specs:", 1)[0]
    specs = yaml.safe_load(text)
    options = specs["argument_specs"]["main"]["options"]
    merged = {}
    for name, (default, description) in described_defaults().items():
        spec = dict(options.get(name, {}))
        spec["description"] = description
        templated = isinstance(default, str) and "{{" in default
        if not templated and spec.get("type") != "raw":
            spec["type"] = TYPES[type(default)]
        elif "type" not in spec:
            raise SystemExit(f"{name}: its default is a template; give it a type in {SPECS.name}")
        if spec["type"] == "list" and "elements" not in spec:
            spec["elements"] = "str"
        spec["default"] = default
        ordered = {
            k: spec[k]
            for k in ("description", "type", "elements", "choices", "no_log", "options", "default")
            if k in spec
        }
        merged[name] = ordered
    specs["argument_specs"]["main"]["options"] = merged
    SPECS.write_text(header + yaml.dump(specs, Dumper=IndentedDumper, sort_keys=False, width=100))
    variables_table.main_write()


if __name__ == "__main__":
    main()
