"""A converged host stays converged: check mode finds nothing to change."""

import re

from conftest import ansible_playbook


def test_check_mode_on_the_converged_host_reports_no_change():
    result = ansible_playbook("--check", "--diff")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    recaps = re.findall(r"changed=(\d+).*failed=(\d+)", result.stdout)
    assert recaps and all(changed == "0" and failed == "0" for changed, failed in recaps), (
        result.stdout[-3000:]
    )
