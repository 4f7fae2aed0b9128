#!/usr/bin/python
"""Digest of a requirements file and of every file it includes (-r, -c), on the host."""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.django_celery.fleet.plugins.module_utils.django_celery_pip import (
    requirement_files,
    requirements_digest,
)

DOCUMENTATION = r"""
module: django_celery_requirements
short_description: Digest of a requirements file and every file it includes
description:
  - Follows C(-r)/C(--requirement) and C(-c)/C(--constraint) lines, each path relative to the
    file naming it, as pip does, and returns one sha256 over all of them.
  - Reads only; never changes the host.
options:
  path: {description: The top requirements file., type: path, required: true}
"""

RETURN = r"""
exists: {description: Whether the top file exists., type: bool, returned: always}
sha256:
  description: Digest of every file pip reads (empty when the top file is missing).
  type: str
  returned: always
files:
  description: The files read, the top one first.
  type: list
  elements: str
  returned: always
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True
    )
    path = module.params["path"]
    exists = os.path.isfile(path)
    module.exit_json(
        changed=False,
        exists=exists,
        sha256=requirements_digest(path) if exists else "",
        files=requirement_files(path) if exists else [],
    )


if __name__ == "__main__":
    main()
