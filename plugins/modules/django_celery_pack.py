#!/usr/bin/python
"""Pack a directory into a reproducible tar.gz (run on the controller)."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: django_celery_pack
short_description: Pack a directory into a reproducible tar.gz
description:
  - Packs the regular files below I(src) into I(dest), sorted by name, owned by root, with gzip's
    timestamp left out, so the same tree always gives the same bytes and copying the archive to a
    host reports a change only when the code changed.
  - Files and directories whose name matches one of I(exclude) are left out.
  - I(dest) is rewritten only when its content would change.
options:
  src: {description: Directory to pack., type: path, required: true}
  dest: {description: Archive to write., type: path, required: true}
  exclude: {description: fnmatch patterns matched against each path component., type: list,
            elements: str, default: []}
"""

RETURN = r"""
sha256: {description: Checksum of the archive., type: str, returned: always}
files: {description: Number of files packed., type: int, returned: always}
"""


def excluded(relpath: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in relpath.split(os.sep) for pat in patterns)


def build(src: str, patterns: list[str]) -> tuple[bytes, int]:
    members = []
    for root, dirs, files in os.walk(src):
        dirs[:] = [
            d for d in dirs if not excluded(os.path.relpath(os.path.join(root, d), src), patterns)
        ]
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            if os.path.isfile(path) and not excluded(rel, patterns):
                members.append(rel)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(members):
            info = tar.gettarinfo(os.path.join(src, rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if info.mode & 0o100 else 0o644
            with open(os.path.join(src, rel), "rb") as handle:
                tar.addfile(info, handle)
    return gzip.compress(raw.getvalue(), mtime=0), len(members)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "exclude": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    src, dest = module.params["src"], module.params["dest"]
    if not os.path.isdir(src):
        module.fail_json(
            msg=f"{src} is not a directory: set django_celery_source_path to the "
            "project directory (the one holding manage.py)"
        )
    data, count = build(src, module.params["exclude"])
    digest = hashlib.sha256(data).hexdigest()
    old = None
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            old = hashlib.sha256(handle.read()).hexdigest()
    changed = old != digest
    if changed and not module.check_mode:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = f"{dest}.{os.getpid()}.tmp"  # two runs packing at once each write their own
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, dest)
    module.exit_json(changed=changed, sha256=digest, files=count)


if __name__ == "__main__":
    main()
