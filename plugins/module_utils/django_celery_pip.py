"""The files pip reads for a requirements file: the file itself and every file it includes.

pip follows ``-r``/``--requirement`` and ``-c``/``--constraint`` lines, each path relative to the
file that names it. Whatever decides that pip may be skipped (the virtualenv's stamp on a host,
the wheelhouse's record on the controller) hashes all of them: a package added to an included
file must reach the virtualenv even when the top file is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re

# "-r base.txt", "--requirement=base.txt", "-cconstraints.txt", "--constraint base.txt"
_INCLUDE = re.compile(r"^(?:-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?=[^\s-]))(\S+)")


def _included(line: str) -> str | None:
    line = line.split(" #", 1)[0].strip()
    match = _INCLUDE.match(line)
    return match.group(1) if match else None


def read_lines(path: str) -> list[str]:
    """The lines of a requirements file, none when it cannot be read (pip reports that)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def requirement_files(path: str) -> list[str]:
    """Every file pip reads for ``path``, ``path`` first, each once (include cycles end).

    A missing included file is listed too: pip fails on it, and the digest changes when it
    appears.
    """
    seen: list[str] = []
    pending = [os.path.normpath(path)]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.append(current)
        for line in read_lines(current):
            name = _included(line)
            if name and "://" not in name:
                pending.append(os.path.normpath(os.path.join(os.path.dirname(current), name)))
    return seen


def requirements_digest(path: str) -> str:
    """sha256 over the name (relative to the top file) and content of every file pip reads; for
    a file that includes none, the sha256 of its content (what earlier versions of the role
    recorded, so that their virtualenvs stay valid)."""
    files = requirement_files(path)
    if len(files) == 1:
        with open(files[0], "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    top = os.path.dirname(os.path.normpath(path))
    digest = hashlib.sha256()
    for name in files:
        digest.update(os.path.relpath(name, top).encode() + b"\0")
        try:
            with open(name, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).hexdigest().encode())
        except OSError:
            digest.update(b"missing")
        digest.update(b"\0")
    return digest.hexdigest()
