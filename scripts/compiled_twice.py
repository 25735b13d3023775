#!/usr/bin/env python3
"""Fails when a feature build compiled crates of the default build a second time.

Usage: compiled_twice.py DEFAULT.json FEATURE.json, each the output of
`cargo build --message-format=json` (the default build, then the build with the feature).
A registry crate that the feature build compiled (not fresh) and that the default build also
has, for the same target and optimisation level, was compiled twice: a shared crate's features
differ between the two builds (see docs/build-budget.md#object-storage for the fix).
"""
import json
import sys


def artifacts(path):
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                message = json.loads(line)
                if message.get("reason") == "compiler-artifact":
                    yield message


def key(artifact):
    return (artifact["package_id"], artifact["target"]["name"], artifact["profile"]["opt_level"])


default = {key(a) for a in artifacts(sys.argv[1])}
twice = sorted(
    {
        a["package_id"].rsplit("#", 1)[-1]
        for a in artifacts(sys.argv[2])
        if not a["fresh"] and a["package_id"].startswith("registry+") and key(a) in default
    }
)
if twice:
    print(
        f"kao: the feature build compiled {len(twice)} crates of the default build again "
        f"(docs/build-budget.md#object-storage): {' '.join(twice)}",
        file=sys.stderr,
    )
    sys.exit(1)
