#!/usr/bin/python3
"""Test a candidate nginx file in place before it replaces the live one.

    django_celery_nginx_check.py CANDIDATE DEST

Ansible's validate gives the candidate in a temporary file; nginx can only test a whole
configuration. This copies /etc/nginx to a temporary directory, puts the candidate where DEST
would be, points every path below /etc/nginx at the copy and runs `nginx -t` on it. The live
configuration is never touched. A "conflicting server name" warning (two projects claiming one
name: nginx would silently serve only the first) fails the test too.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LIVE = Path("/etc/nginx")


def main() -> int:
    candidate, dest = Path(sys.argv[1]), Path(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="nginx-check-") as tmp:
        copy = Path(tmp) / "nginx"
        shutil.copytree(LIVE, copy, symlinks=False, ignore_dangling_symlinks=True)
        target = copy / dest.relative_to(LIVE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, target)
        for path in copy.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    text = path.read_text()
                except UnicodeDecodeError:
                    continue
                if str(LIVE) + "/" in text:
                    path.write_text(text.replace(str(LIVE) + "/", str(copy) + "/"))
        result = subprocess.run(
            ["nginx", "-t", "-c", str(copy / "nginx.conf")],
            capture_output=True,
            text=True,
            check=False,
        )
    output = (result.stdout + result.stderr).replace(str(copy), str(LIVE))
    sys.stderr.write(output)
    if result.returncode != 0:
        return result.returncode
    if "conflicting server name" in output:
        sys.stderr.write(f"{dest}: a name it serves is already served by another file\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
