#!/usr/bin/env python3
"""scripts/check-fs-cycles.py OBJ...: the files of fs/ form no circle.

Reads the symbols each object file of fs/ defines and uses (nm), draws an
edge from a file to every other file whose function or variable it uses,
and fails (exit 1) on any cycle, naming its files and the symbols that
close it.  On success prints the files bottom-up, each after what it uses
(docs/CODING.md, "Layers inside fs/").  Run by make check-layers."""
import os
import subprocess
import sys


def symbols(obj):
    defined, used = set(), set()
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBRC":
            defined.add(f[2])
        elif len(f) == 2 and f[0] == "U":
            used.add(f[1])
    return defined, used


def main(objs):
    if not objs:
        sys.exit("usage: check-fs-cycles.py OBJ...")
    owner, uses = {}, {}
    for o in objs:
        name = os.path.basename(o)[:-2] + ".c"
        d, u = symbols(o)
        for s in d:
            owner[s] = name
        uses[name] = u
    edges = {f: {} for f in uses}
    for f, u in uses.items():
        for s in u:
            t = owner.get(s)
            if t and t != f:
                edges[f].setdefault(t, []).append(s)
    # depth-first search; a back edge is a cycle
    state, order, stack = {}, [], []

    def visit(f):
        state[f] = 1
        stack.append(f)
        for t in sorted(edges[f]):
            if state.get(t) == 1:
                cyc = stack[stack.index(t):] + [t]
                why = "; ".join(
                    "%s -> %s (%s)" % (a, b, ", ".join(sorted(edges[a][b])[:3]))
                    for a, b in zip(cyc, cyc[1:]))
                sys.exit("fs/ files form a circle: " + why)
            if not state.get(t):
                visit(t)
        stack.pop()
        state[f] = 2
        order.append(f)

    for f in sorted(edges):
        if not state.get(f):
            visit(f)
    print("fs/ files, bottom-up: " + " ".join(order))


if __name__ == "__main__":
    main(sys.argv[1:])
