#!/usr/bin/python3
"""The include layers of hpo, checked on every build (target check_layers) and by ctest.

Each folder may include only the folders listed for it (and itself); the listed graph must have no
cycle. So a lower layer that includes a higher one, or two siblings that include each other, fail the
build with the file, the line and the rule. `hpo` is the generated gRPC/proto code: proto types stay
at the edges (rpc, the worker's and the client's gRPC code), never in model, sampler, pruner, storage
or core.

Usage: check_layers.py ROOT            check the tree at ROOT (exit 1 on a violation)
       check_layers.py --self-test     check that a tree with a violation and a cyclic rule are refused
"""
import os
import re
import sys
import tempfile

ALLOWED = {
    "proto/common": ["hpo"],
    "server/model": ["proto/common"],
    "server/sampler": ["server/model", "proto/common"],
    "server/pruner": ["server/model", "proto/common"],
    "server/storage": ["server/model", "proto/common"],
    "server/core": ["server/model", "server/sampler", "server/pruner", "server/storage", "proto/common"],
    "server/auth": ["proto/common"],
    "server/http": ["server/core", "server/model", "server/storage", "proto/common"],
    "server/rpc": ["server/core", "server/model", "server/auth", "server/http", "proto/common", "hpo"],
    "server": ["server/rpc", "server/http", "server/auth", "server/core", "server/model", "server/sampler",
               "server/pruner", "server/storage", "proto/common", "hpo"],
    "worker/data": ["proto/common"],
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
PROJECT_TOPS = ("server/", "proto/", "worker/", "client/", "hpo/")


def folder_of(include):
    """The layer folder an include path belongs to, or None for third-party headers."""
    if not include.startswith(PROJECT_TOPS):
        return None
    if include.startswith("hpo/"):
        return "hpo"
    parts = include.split("/")
    if include.startswith("server/") and len(parts) == 2:
        return "server"
    return "/".join(parts[:2])


def find_cycle(allowed):
    state = {}

    def visit(node, path):
        state[node] = 1
        for dep in allowed.get(node, []):
            if state.get(dep) == 1:
                return path + [dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for node in allowed:
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def check(root, allowed=ALLOWED):
    problems = []
    cycle = find_cycle(allowed)
    if cycle:
        problems.append("the layer rules have a cycle: " + " -> ".join(cycle))
    for layer in allowed:
        if layer in ("hpo",):
            continue
        path = os.path.join(root, layer)
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            if not name.endswith((".h", ".cc")):
                continue
            with open(os.path.join(path, name), encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = folder_of(m.group(1))
                    if target is None or target == layer or target in allowed[layer]:
                        continue
                    problems.append(f"{layer}/{name}:{n}: includes \"{m.group(1)}\", but {layer}/ may include only "
                                    f"{', '.join(allowed[layer]) or 'itself'} (tests/check_layers.py)")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "server/model"))
        os.makedirs(os.path.join(root, "server/core"))
        with open(os.path.join(root, "server/core/a.h"), "w") as f:
            f.write('#include "server/model/types.h"\n')
        assert check(root) == [], check(root)
        with open(os.path.join(root, "server/model/types.h"), "w") as f:
            f.write('#include <map>\n#include "server/core/coordinator.h"\n')
        problems = check(root)
        assert len(problems) == 1 and "server/model/types.h:2" in problems[0], problems
        bad = dict(ALLOWED, **{"server/model": ["server/core"]})
        assert any("cycle" in p for p in check(root, bad)), check(root, bad)
    print("check_layers self-test: a violation and a cyclic rule are refused")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check(root)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
