#!/usr/bin/python
"""Make a list of directories exist with the given owner, group and mode, in one call."""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.django_celery.fleet.plugins.module_utils.django_celery_owner import (
    owner_ids,
)

DOCUMENTATION = r"""
module: django_celery_directories
short_description: Make several directories exist with their owner, group and mode, in one call
description:
  - The same as one M(ansible.builtin.file) C(state=directory) task per directory, in a single
    round trip to the host; a loop of nine directories costs nine module runs, this costs one.
  - Directories are handled in the order given (parents first); a missing parent is created by
    its own entry, not implicitly.
  - Supports check mode and diff mode (one before/after line per directory changed).
options:
  directories:
    description: Each with C(path), C(owner), C(group) and C(mode) (an octal string).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
changed_paths: {description: The directories created or changed., type: list, returned: always}
created_paths: {description: The directories that did not exist before the call., type: list,
                returned: always}
"""


def describe(st: os.stat_result | None) -> str:
    if st is None:
        return "absent"
    owner = pwd.getpwuid(st.st_uid).pw_name
    group = grp.getgrgid(st.st_gid).gr_name
    return f"{owner}:{group} {stat.S_IMODE(st.st_mode):04o}"


def ensure(entry: dict, check: bool) -> tuple[str, str] | None:
    """Return (before, after) when the directory had to change, else None."""
    path = entry["path"]
    mode = int(entry["mode"], 8)
    uid, gid = owner_ids(entry["owner"], entry["group"], check) or (-1, -1)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} exists and is not a directory")
    wanted = f"{entry['owner']}:{entry['group']} {mode:04o}"
    before = describe(st)
    if before == wanted:
        return None
    if not check:
        if st is None:
            os.mkdir(path, mode)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return before, wanted


def main() -> None:
    module = AnsibleModule(
        argument_spec={"directories": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    changed_paths, created_paths = [], []
    before, after = [], []
    for entry in module.params["directories"]:
        missing = {"path", "owner", "group", "mode"} - set(entry)
        if missing:
            module.fail_json(msg=f"directory entry {entry!r} lacks {', '.join(sorted(missing))}")
        try:
            change = ensure(entry, module.check_mode)
        except (KeyError, OSError, ValueError) as error:
            module.fail_json(msg=f"{entry['path']}: {error}", changed_paths=changed_paths)
        if change:
            changed_paths.append(entry["path"])
            if change[0] == "absent":
                created_paths.append(entry["path"])
            before.append(f"{entry['path']}: {change[0]}\n")
            after.append(f"{entry['path']}: {change[1]}\n")
    result = {
        "changed": bool(changed_paths),
        "changed_paths": changed_paths,
        "created_paths": created_paths,
    }
    if module._diff and changed_paths:
        result["diff"] = {"before": "".join(before), "after": "".join(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
