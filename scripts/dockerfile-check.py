#!/usr/bin/env python3
"""A small Dockerfile parser check (Docker 20.10 has no `docker build --check`, and a real build
of the top-level Dockerfile needs a registry): joins continuation lines, then checks that every
instruction is a known one, the first is FROM (after ARGs), JSON-form arguments are valid JSON
arrays of strings, and every `COPY --from=NAME` names an earlier stage. Exit 1 on any problem."""

import json
import re
import sys

KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
         "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
JSON_FORM = {"CMD", "ENTRYPOINT", "RUN", "SHELL", "VOLUME"}


def instructions(text):
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending = ""
    if pending:
        yield start, pending


def check(path):
    problems, stages, seen_from = [], set(), False
    for number, line in instructions(open(path, encoding="utf-8").read()):
        word, _, args = line.partition(" ")
        word, args = word.upper(), args.strip()
        where = f"{path}:{number}"
        if word not in KNOWN:
            problems.append(f"{where}: unknown instruction {word}")
            continue
        if not seen_from and word not in ("FROM", "ARG"):
            problems.append(f"{where}: {word} before the first FROM")
        if not args:
            problems.append(f"{where}: {word} without arguments")
        if word == "FROM":
            seen_from = True
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            if not m:
                problems.append(f"{where}: FROM image [AS name] expected")
            elif m.group(2):
                stages.add(m.group(2).lower())
        if word in JSON_FORM and args.startswith("["):
            try:
                value = json.loads(args)
                assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            except (ValueError, AssertionError):
                problems.append(f"{where}: {word} JSON form is not an array of strings")
        if word == "COPY":
            for stage in re.findall(r"--from=(\S+)", args):
                if stage.lower() not in stages and not stage.isdigit() and "/" not in stage:
                    problems.append(f"{where}: COPY --from={stage}: no such earlier stage")
    if not seen_from:
        problems.append(f"{path}: no FROM")
    return problems


def main(paths):
    problems = [p for path in paths for p in check(path)]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"dockerfile-check: {len(paths)} file(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
