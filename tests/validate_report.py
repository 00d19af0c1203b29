#!/usr/bin/env python3
"""tests/validate_report.py — validates upgrun report.json files against
docs/report.schema.json (JSON Schema 2020-12, python3-jsonschema).

usage: validate_report.py PATH...   a report.json or a directory holding one
Prints each error as FILE: JSON-POINTER: message and exits 1 if any report is
invalid (2 if a file cannot be read), 0 with "N valid" when all are."""
import json
import os
import sys

import jsonschema

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "report.schema.json")


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    with open(SCHEMA) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    bad = 0
    for path in paths:
        if os.path.isdir(path):
            path = os.path.join(path, "report.json")
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read: {e}", file=sys.stderr)
            return 2
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors[:20]:
            pointer = "/" + "/".join(str(p) for p in e.absolute_path)
            print(f"{path}: {pointer}: {e.message[:300]}", file=sys.stderr)
        if errors:
            bad += 1
    if bad:
        print(f"{bad} of {len(paths)} report(s) invalid", file=sys.stderr)
        return 1
    print(f"{len(paths)} valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
