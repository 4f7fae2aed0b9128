#!/usr/bin/python
"""Make several systemd units started or stopped, and enabled or not, in one call."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: django_celery_services
short_description: Start, stop or restart, enable or disable several systemd units in one call
description:
  - What one M(ansible.builtin.systemd_service) task per unit does (C(state) started or stopped,
    C(enabled)), in a single round trip; the units' states are read with one C(systemctl show).
  - Units already in the wanted state are left alone, so a re-run reports no change.
  - C(state=restarted) restarts the units together, in one C(systemctl restart), so a worker pool
    that stops warm (waiting for its running tasks) does not hold up the next one.
  - Supports check mode.
options:
  units:
    description: >-
      Each with C(name), C(state) (C(started), C(stopped) or C(restarted)) and C(enabled) (bool).
    type: list
    elements: dict
    required: true
  daemon_reload:
    description: Run C(systemctl daemon-reload) first (a unit file changed in this run).
    type: bool
    default: false
"""

RETURN = r"""
changed_units: {description: The units started, stopped, enabled or disabled., type: list,
                returned: always}
started_units: {description: The units that were not running and were started., type: list,
                returned: always}
"""

ACTIVE = {"active", "activating", "reloading"}
ENABLED = {"enabled", "enabled-runtime", "alias", "static", "indirect", "generated"}


def parse_show(output: str) -> list[dict]:
    """Split `systemctl show -p A,B unit...` output (blank-line separated blocks) into dicts."""
    blocks, current = [], {}
    for line in output.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


def actions(unit: dict, shown: dict, check: bool = False) -> list[list[str]]:
    """The systemctl commands that bring one unit from its shown state to the wanted one."""
    name = unit["name"]
    if shown.get("LoadState") == "not-found":
        if check and unit["state"] == "started":
            # Check mode: the unit file this run would write is not there yet.
            return [["enable", name], ["start", name]] if unit["enabled"] else [["start", name]]
        if unit["state"] == "stopped" and not unit["enabled"]:
            return []
        raise ValueError(f"unit {name} not found")
    commands = []
    enabled = shown.get("UnitFileState", "") in ENABLED
    if unit["enabled"] and not enabled:
        commands.append(["enable", name])
    elif not unit["enabled"] and enabled and shown.get("UnitFileState") != "static":
        commands.append(["disable", name])
    active = shown.get("ActiveState", "") in ACTIVE
    if unit["state"] == "restarted":
        commands.append(["restart", name])
    elif unit["state"] == "started" and not active:
        commands.append(["start", name])
    elif unit["state"] == "stopped" and active:
        commands.append(["stop", name])
    return commands


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "dict", "required": True},
            "daemon_reload": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    units = module.params["units"]
    for unit in units:
        if unit.get("state") not in ("started", "stopped", "restarted") or not isinstance(
            unit.get("enabled"), bool
        ):
            module.fail_json(
                msg=f"unit entry {unit!r} needs state started or stopped, enabled a bool"
            )
    systemctl = module.get_bin_path("systemctl", required=True)
    if module.params["daemon_reload"] and not module.check_mode:
        module.run_command([systemctl, "daemon-reload"], check_rc=True)
    if not units:
        module.exit_json(changed=False, changed_units=[], started_units=[])
    rc, out, err = module.run_command(
        [systemctl, "show", "--property=Id,LoadState,ActiveState,UnitFileState", "--"]
        + [unit["name"] for unit in units]
    )
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed: {err.strip()}")
    shown = parse_show(out)
    if len(shown) != len(units):
        module.fail_json(msg=f"systemctl show answered for {len(shown)} of {len(units)} units")
    changed_units, started_units, restarts = [], [], []
    for unit, state in zip(units, shown, strict=True):
        try:
            commands = actions(unit, state, module.check_mode)
        except ValueError as error:
            module.fail_json(msg=str(error), changed_units=changed_units)
        if not commands:
            continue
        changed_units.append(unit["name"])
        if ["start", unit["name"]] in commands:
            started_units.append(unit["name"])
        if module.check_mode:
            continue
        for command in commands:
            if command[0] == "restart":
                restarts.append(command[1])
                continue
            rc, out, err = module.run_command([systemctl] + command)
            if rc != 0:
                module.fail_json(
                    msg=f"systemctl {' '.join(command)} failed: {(err or out).strip()}",
                    changed_units=changed_units,
                )
    if restarts:
        rc, out, err = module.run_command([systemctl, "restart", "--"] + restarts)
        if rc != 0:
            module.fail_json(msg=f"systemctl restart failed: {(err or out).strip()}")
    module.exit_json(
        changed=bool(changed_units), changed_units=changed_units, started_units=started_units
    )


if __name__ == "__main__":
    main()
