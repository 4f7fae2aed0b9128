#!/usr/bin/python
"""Reload a service gracefully when what it was started with still holds, else restart it."""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: django_celery_reload
short_description: Reload gunicorn when only code or settings changed, restart it otherwise
description:
  - A reload (C(systemctl reload), which sends gunicorn C(HUP)) starts new workers from the code
    the C(current) link points at now and retires the old ones gracefully; the listening socket
    never closes, so no request fails. It cannot change what the master process was started
    with, so the module restarts the unit instead when that changed.
  - Restart when the unit is not running, when an environment file is newer than the running
    main process (systemd read it at start), or when the process runs another virtualenv's
    Python than the one given (a release with other dependencies).
  - Supports check mode.
options:
  unit:
    description: The systemd unit.
    type: str
    required: true
  environment_files:
    description: The unit's EnvironmentFile= paths.
    type: list
    elements: path
    default: []
  virtualenv:
    description: The virtualenv the service should run (a link is followed).
    type: path
    required: true
"""

RETURN = r"""
action: {description: reload or restart., type: str, returned: always}
reason: {description: Why., type: str, returned: always}
"""


def decide(
    pid: int, started_at: float, env_mtimes: dict, running_venv: str, wanted_venv: str
) -> tuple[str, str]:
    """(action, reason) for a unit whose main process is pid (0: not running)."""
    if pid == 0:
        return "restart", "it is not running"
    newer = sorted(path for path, mtime in env_mtimes.items() if mtime > started_at)
    if newer:
        return "restart", f"{', '.join(newer)} changed since it started"
    if running_venv != wanted_venv:
        return "restart", f"it runs {running_venv}, the release needs {wanted_venv}"
    return "reload", "only code or settings changed"


def process_start(pid: int) -> float:
    """When a process started, in seconds since the epoch (to a clock tick)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: count from after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[19])  # field 22, starttime
    with open("/proc/stat") as proc_stat:
        boot = next(int(line.split()[1]) for line in proc_stat if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_venv(pid: int) -> str:
    """The virtualenv whose bin/python the process runs (from its command line)."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        interpreter = cmdline.read().split(b"\0")[0].decode()
    return os.path.realpath(os.path.dirname(os.path.dirname(interpreter)))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "required": True},
            "environment_files": {"type": "list", "elements": "path", "default": []},
            "virtualenv": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    unit = module.params["unit"]
    systemctl = module.get_bin_path("systemctl", required=True)
    _, out, _ = module.run_command(
        [systemctl, "show", "--property=MainPID", "--value", "--", unit], check_rc=True
    )
    pid = int(out.strip() or 0)
    started_at, running_venv = 0.0, ""
    if pid:
        try:
            started_at, running_venv = process_start(pid), process_venv(pid)
        except OSError:  # it just exited
            pid = 0
    env_mtimes = {
        path: os.stat(path).st_mtime
        for path in module.params["environment_files"]
        if os.path.exists(path)
    }
    wanted_venv = os.path.realpath(module.params["virtualenv"])
    action, reason = decide(pid, started_at, env_mtimes, running_venv, wanted_venv)
    if not module.check_mode:
        module.run_command([systemctl, action, "--", unit], check_rc=True)
    module.exit_json(changed=True, action=action, reason=reason)


if __name__ == "__main__":
    main()
