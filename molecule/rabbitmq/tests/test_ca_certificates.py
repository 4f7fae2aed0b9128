"""Extra CA certificates (README: "added to the host's system store and pip is pointed at that
bundle. Certificate verification is never turned off").

The scenario lists a throwaway test CA made by prepare.yml plus the controller's own extra CAs
(the TLS-intercepting proxy's on CI). prepare.yml also put on the host a server certificate
signed by that test CA (trusted.*) and a self-signed one nobody trusts (untrusted.*).
"""

import json
import re
import shlex
import ssl
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import SCENARIO
from rabbitmq_helpers import ENV_FILE, PROJECT_DIR, VENV_PYTHON, ansible_value, env_file

BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TLS_DIR = "/root/test-tls"
PORT = 18443
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# An HTTPS server on the host's loopback for the length of one client command.
SERVE = """
timeout 60 openssl s_server -quiet -www -accept 127.0.0.1:{port} \
  -cert {dir}/{name}.crt -key {dir}/{name}.key >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do ss -Hltn 'sport = :{port}' | grep -q . && break; sleep 0.1; done
{client}
status=$?
kill "$server"
exit "$status"
"""
URLOPEN = f"{VENV_PYTHON} -c 'import urllib.request as u; u.urlopen(\"https://localhost:{PORT}/\")'"


def certificates(pem: str) -> set:
    return {ssl.PEM_cert_to_DER_cert(block) for block in PEM.findall(pem)}


def with_tls_server(host, name: str, client: str):
    script = SERVE.format(port=PORT, dir=TLS_DIR, name=name, client=client)
    return host.run(f"bash -c {shlex.quote(script)}")


@pytest.fixture(scope="module")
def listed() -> list:
    return ansible_value("django_celery_ca_certificates")


@pytest.fixture(scope="module")
def role_pip() -> dict:
    """How the role runs pip for this scenario: its pip arguments and environment, evaluated by
    Ansible from the role's vars/main.yml with the role's defaults and the scenario's values."""
    role = PROJECT_DIR / "roles/django_celery"
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    given = {k: v for k, v in defaults.items() if k not in SCENARIO}
    given.update(yaml.safe_load((role / "vars/main.yml").read_text()))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as extra:
        json.dump(given, extra)
        extra.flush()
        return ansible_value(
            "{'args': _django_celery_pip_args, 'env': _django_celery_pip_env}", f"@{extra.name}"
        )


def pip_download(role_pip: dict) -> str:
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in role_pip["env"].items())
    args = " ".join(shlex.quote(arg) for arg in role_pip["args"])
    return (
        f"env {env} {VENV_PYTHON} -m pip download --no-deps --retries 0 --timeout 10 "
        f"--dest $(mktemp -d) {args} --index-url https://localhost:{PORT}/simple/ tls-probe"
    )


def test_the_scenario_lists_the_test_ca_certificate(listed):
    assert [path for path in listed if path.endswith("/molecule-test-ca.crt")], listed
    assert all(certificates(Path(path).read_text()) for path in listed), listed


def test_each_listed_ca_certificate_is_installed_on_the_host(host, listed):
    wrong = []
    for path in listed:
        stem = re.sub(r"\.(pem|crt)$", "", Path(path).name)
        installed = host.file(f"/usr/local/share/ca-certificates/django_celery-{stem}.crt")
        if not installed.exists or installed.content_string != Path(path).read_text():
            wrong.append(path)
    assert not wrong, f"not installed (or different) on the host: {wrong}"


def test_each_listed_ca_certificate_is_in_the_system_bundle(host, listed):
    bundle = certificates(host.file(BUNDLE).content_string)
    missing = [path for path in listed if not certificates(Path(path).read_text()) <= bundle]
    assert not missing, f"not in {BUNDLE}: {missing}"


def test_the_role_points_pip_at_the_system_bundle_without_trusted_hosts(role_pip):
    env, args = role_pip["env"], role_pip["args"]
    assert env.get("PIP_CERT") == BUNDLE, env
    assert not [key for key in env if re.search("TRUSTED|VERIFY|CLIENT_CERT", key)], env
    assert not [arg for arg in args if re.search("trusted-host|--cert|--client-cert", arg)], args


def test_pip_configuration_on_the_host_weakens_no_verification(host):
    # Every configuration pip reads on the host (global, site, user files and PIP_* variables),
    # with the services' environment loaded.
    script = f"set -a; . {ENV_FILE}; set +a; {VENV_PYTHON} -m pip config list"
    result = host.run(f"bash -c {shlex.quote(script)}")
    assert result.rc == 0, result.stderr
    settings = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert not [key for key in settings if key.endswith(("trusted-host", "client-cert"))], settings
    certs = {key: value for key, value in settings.items() if key.endswith(".cert")}
    assert all(value.strip("'\"") == BUNDLE for value in certs.values()), certs


def test_the_services_environment_overrides_no_tls_setting(host):
    names = [
        name
        for name in env_file(host)
        # (TRUSTED_HOST, TRUSTED_CA: not CSRF_TRUSTED_ORIGINS, which is Django's, not TLS's.)
        if re.search("PIP_|CA_BUNDLE|SSL_CERT|HTTPSVERIFY|CURL_CA|TRUSTED_HOST|TRUSTED_CA", name)
    ]
    assert not names, names


def test_tls_from_the_host_rejects_a_server_signed_by_no_trusted_ca(host):
    result = with_tls_server(host, "untrusted", URLOPEN)
    assert result.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in result.stderr, result.stderr[-800:]


def test_tls_from_the_host_trusts_a_server_signed_by_a_listed_ca(host):
    result = with_tls_server(host, "trusted", URLOPEN)
    assert result.rc == 0, result.stderr[-800:]


def test_pip_as_the_role_runs_it_rejects_an_index_signed_by_no_trusted_ca(host, role_pip):
    result = with_tls_server(host, "untrusted", pip_download(role_pip))
    output = result.stdout + result.stderr
    assert result.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in output, output[-800:]


def test_pip_as_the_role_runs_it_trusts_an_index_signed_by_a_listed_ca(host, role_pip):
    # openssl s_server's status page is an index without the package: pip got that far.
    result = with_tls_server(host, "trusted", pip_download(role_pip))
    output = result.stdout + result.stderr
    assert "No matching distribution found for tls-probe" in output, output[-800:]
    assert "CERTIFICATE_VERIFY_FAILED" not in output and "SSLError" not in output, output[-800:]
