#!/usr/bin/env python3
"""long-functions.py [LIMIT] [FILE...]: lists the C functions longer than LIMIT lines (default
100), longest first, from the first line of the signature to the closing brace; by default over
engine/, server/, config/ and cli/. A regex over the house style (a definition starts at column
0, its body closes with a `}` at column 0), not a C parser. STYLE.md: functions in engine/ and
server/ stay under about 100 lines unless a comment says why."""
import glob
import os
import re
import sys


def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if (re.match(r"^[A-Za-z_].*\(", line) and not line.startswith(("typedef", "struct"))
                and not line.rstrip().endswith(";") and "=" not in line.split("(")[0]):
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith("{"):
                k = j + 1
                while k < len(lines) and not lines[k].startswith("}"):
                    k += 1
                yield re.findall(r"([A-Za-z_0-9]+)\s*\(", line)[0], i + 1, k - i + 1
                i = k
        i += 1


def main():
    args = sys.argv[1:]
    limit = int(args.pop(0)) if args and args[0].isdigit() else 100
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    files = args or sorted(f for d in ("engine", "server", "config", "cli")
                           for f in glob.glob(os.path.join(root, d, "**", "*.c"), recursive=True))
    rows = [(n, os.path.relpath(f, root), line, name)
            for f in files for name, line, n in functions(f) if n > limit]
    for n, f, line, name in sorted(rows, reverse=True):
        print(f"{n:5d} {f}:{line} {name}")


if __name__ == "__main__":
    main()
