#!/usr/bin/python
"""Write several files (content rendered on the controller) in one call, each only if it changed."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.django_celery.fleet.plugins.module_utils.django_celery_owner import (
    owner_ids,
)

DOCUMENTATION = r"""
module: django_celery_files
short_description: Write several files in one call, each only when its content or mode changed
description:
  - What one M(ansible.builtin.template) task per file does, in a single round trip to the host;
    a template task costs four or five commands on the host even when nothing changed; this
    costs one for all the files.
  - The content is rendered on the controller (C(lookup('ansible.builtin.template', ...))).
  - A changed file is written to a temporary file next to it, checked with I(validate), then
    renamed over the old one, so a file that fails the check never replaces the live one.
  - Supports check mode and diff mode (one diff per changed file, unless the entry says
    C(diff=false)).
  - An entry with C(secret=true) shows no diff and its content is masked in anything the module
    returns; files holding passwords in clear still belong in a template task with C(no_log).
options:
  files:
    description: >-
      Each with C(dest), C(content), C(owner), C(group), C(mode) (octal string); optional
      C(validate) (a command with C(%s) for the file to check), C(diff) (default true) and
      C(secret) (default false).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
changed_files: {description: The files written or whose owner or mode changed., type: list,
                returned: always}
"""


def attributes(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def read(path: str) -> tuple[bytes | None, os.stat_result | None]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} exists and is not a regular file")
    with open(path, "rb") as handle:
        return handle.read(), st


def validate(command: str, path: str) -> None:
    argv = [part.replace("%s", path) for part in shlex.split(command)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValueError(
            f"validation with {command!r} failed: {(done.stderr or done.stdout).strip()}"
        )


def write(entry: dict, content: bytes, uid: int, gid: int, mode: int) -> None:
    directory = os.path.dirname(entry["dest"])
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(entry['dest'])}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        if entry.get("validate"):
            validate(entry["validate"], tmp)
        os.replace(tmp, entry["dest"])
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure(entry: dict, check: bool) -> tuple[bytes | None, bool] | None:
    """Bring one file to its wanted state; return (old content, content changed) if it changed."""
    content = entry["content"].encode("utf-8")
    mode = int(entry["mode"], 8)
    ids = owner_ids(entry["owner"], entry["group"], check)
    if ids is None:
        return read(entry["dest"])[0], True
    uid, gid = ids
    old, st = read(entry["dest"])
    if old == content and attributes(st) == (uid, gid, mode):
        return None
    if not check:
        if old == content:
            os.chown(entry["dest"], uid, gid)
            os.chmod(entry["dest"], mode)
        else:
            write(entry, content, uid, gid, mode)
    return old, old != content


def main() -> None:
    module = AnsibleModule(
        argument_spec={"files": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    changed_files, diffs = [], []
    for entry in module.params["files"]:
        if entry.get("secret"):
            module.no_log_values.add(entry.get("content", ""))
        missing = {"dest", "content", "owner", "group", "mode"} - set(entry)
        if missing:
            module.fail_json(
                msg=f"file entry for {entry.get('dest')!r} lacks {', '.join(sorted(missing))}"
            )
        try:
            change = ensure(entry, module.check_mode)
        except (KeyError, OSError, ValueError) as error:
            module.fail_json(msg=f"{entry['dest']}: {error}", changed_files=changed_files)
        if change is None:
            continue
        changed_files.append(entry["dest"])
        old, content_changed = change
        if content_changed and entry.get("diff", True) and not entry.get("secret"):
            diffs.append(
                {
                    "before_header": entry["dest"],
                    "after_header": entry["dest"],
                    "before": (old or b"").decode("utf-8", "replace"),
                    "after": entry["content"],
                }
            )
    result = {"changed": bool(changed_files), "changed_files": changed_files}
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
