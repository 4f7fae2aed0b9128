"""The cluster scenario's helpers (molecule/cluster/tests/fleet.py) for this scenario, whose
fleet is the same with its hosts named dc-ha-* on the network dc-ha."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[2] / "cluster" / "tests" / "fleet.py"
_spec = importlib.util.spec_from_file_location("cluster_fleet", _SOURCE)
_fleet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fleet)
_fleet.NETWORK = "dc-ha"

INVENTORY = _fleet.INVENTORY
SCENARIO = _fleet.SCENARIO
docker = _fleet.docker
from_outside_the_fleet = _fleet.from_outside_the_fleet
node = _fleet.node
playbook = _fleet.playbook
recap = _fleet.recap
run_id = _fleet.run_id
wait_until = _fleet.wait_until
