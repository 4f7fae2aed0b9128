"""nginx in front of gunicorn: HTTPS with Mozilla's intermediate profile, HTTP redirected, static
files from disk, unknown names refused, Django's deploy checks clean behind it.

Every request goes from the host to its own nginx on 127.0.0.1 with the site's name as Host and
TLS server name, trusting only the site's self-signed certificate (molecule/conftest.py,
front_door), so a certificate that does not name the site fails the request.
"""

from __future__ import annotations

import re

import pytest
from conftest import (
    MANAGE,
    NAME,
    _quote,
    front_door,
    header_values,
    run_ok,
    site_certificate,
    unique_id,
)

SITE_CONF = f"/etc/nginx/conf.d/django_celery-{NAME}.conf"
STATIC_FILE = "admin/css/base.css"


@pytest.fixture(scope="module")
def site(host) -> str:
    """The first name the site answers to (the host's FQDN with the role's defaults)."""
    names = re.search(r"^\s*server_name\s+([^;]+);", host.file(SITE_CONF).content_string, re.M)
    return names.group(1).split()[0]


def openssl_handshake(host, site: str, *options: str) -> bool:
    """Whether nginx completes a TLS handshake for the site with these client options. The
    client's own floor is lowered (SECLEVEL=0) so that a refusal is nginx's, not OpenSSL's."""
    command = " ".join(
        [
            "openssl",
            "s_client",
            "-connect",
            "127.0.0.1:443",
            "-servername",
            site,
            *[_quote(o) for o in options],
        ]
    )
    result = host.run(f"echo | timeout 20 {command}")
    return result.rc == 0 and "Cipher is (NONE)" not in result.stdout


def test_nginx_runs_and_starts_at_boot(host):
    service = host.service("nginx")
    assert service.is_running and service.is_enabled


def test_the_live_nginx_configuration_passes_nginx_t(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr
    assert "warn" not in result.stderr, result.stderr


def test_a_django_view_answers_over_https_through_nginx(host, site):
    answer = front_door(host, site, "/health/")
    assert answer["status"] == 200, answer


def test_the_admin_login_page_answers_over_https(host, site):
    answer = front_door(host, site, "/admin/login/")
    assert answer["status"] == 200 and "csrfmiddlewaretoken" in answer["body"], answer["status"]


def test_plain_http_is_redirected_to_https_for_the_same_path(host, site):
    answer = front_door(host, site, "/admin/login/?next=/x", scheme="http")
    assert answer["status"] == 301
    assert header_values(answer, "Location") == [f"https://{site}/admin/login/?next=/x"]


def test_hsts_is_sent_exactly_once_for_two_years_on_a_django_page(host, site):
    answer = front_door(host, site, "/admin/login/")
    assert header_values(answer, "Strict-Transport-Security") == ["max-age=63072000"]


def test_hsts_is_sent_exactly_once_on_a_static_file(host, site):
    answer = front_door(host, site, f"/static/{STATIC_FILE}")
    assert header_values(answer, "Strict-Transport-Security") == ["max-age=63072000"]


def test_a_static_file_is_answered_by_nginx_from_static_root_not_by_gunicorn(host, site):
    probe = unique_id("static-probe")
    answer = front_door(host, site, f"/static/{STATIC_FILE}?{probe}")
    on_disk = host.file(f"/srv/{NAME}/static/{STATIC_FILE}").content_string
    assert (answer["status"], answer["body"]) == (200, on_disk)
    assert probe in host.file("/var/log/nginx/access.log").content_string
    assert probe not in run_ok(host, "journalctl", "-u", f"{NAME}-web.service", "--no-pager")


def test_a_static_file_without_a_content_hash_is_cached_for_an_hour(host, site):
    answer = front_door(host, site, f"/static/{STATIC_FILE}")
    assert header_values(answer, "Cache-Control") == ["max-age=3600"]


def test_nginx_reads_the_static_files_through_their_group_and_others_cannot(host):
    path = f"/srv/{NAME}/static/{STATIC_FILE}"
    assert host.run(f"runuser -u www-data -- cat {path}").rc == 0
    assert host.run(f"runuser -u nobody -- cat {path}").rc != 0


def test_an_unknown_host_name_gets_no_http_answer(host):
    result = host.run(
        "python3 -c \"import http.client as h; c = h.HTTPConnection('127.0.0.1', 80, timeout=9); "
        "c.request('GET', '/', headers={'Host': 'unknown.invalid'}); "
        'print(c.getresponse().status)"'
    )
    assert result.rc != 0 and "RemoteDisconnected" in result.stderr, result.stdout


def test_an_unknown_tls_server_name_is_refused_in_the_handshake(host):
    assert not openssl_handshake(host, "unknown.invalid", "-tls1_2")


def test_tls_1_2_with_an_aead_cipher_is_accepted(host, site):
    """The control for the refusals below: the same client, a cipher of the profile."""
    assert openssl_handshake(host, site, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")


def test_tls_1_3_is_accepted(host, site):
    assert openssl_handshake(host, site, "-tls1_3")


def test_tls_1_1_is_refused(host, site):
    assert not openssl_handshake(host, site, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")


def test_a_cbc_cipher_is_refused_over_tls_1_2(host, site):
    assert not openssl_handshake(
        host, site, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:AES128-SHA:@SECLEVEL=0"
    )


def test_http2_is_offered(host, site):
    # (Only the line wanted: after the handshake nginx sends binary HTTP/2 frames.)
    result = host.run(
        f"echo | timeout 20 openssl s_client -connect 127.0.0.1:443 -servername {site} -alpn h2 "
        "2>&1 | grep -a '^ALPN protocol'"
    )
    assert result.stdout.strip() == "ALPN protocol: h2", result.stdout


def test_the_self_signed_certificate_names_every_site_name_and_its_key_is_root_only(host, site):
    text = run_ok(
        host, "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", site_certificate()
    )
    assert f"DNS:{site}" in text
    key = host.file(f"/etc/ssl/django_celery/{NAME}.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)


def test_djangos_deploy_checks_pass_at_warning_level(host):
    result = host.run(f"{MANAGE} check --deploy --fail-level WARNING")
    assert result.rc == 0, result.stdout + result.stderr


def test_a_csrf_protected_post_over_https_is_accepted(host, site):
    """The admin login form posted back with its token and cookie: a wrong password gets the
    form again (200, "correct username"), where a CSRF failure would be a 403."""
    page = front_door(host, site, "/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page["body"]).group(1)
    cookie = next(
        value.split(";", 1)[0]
        for value in header_values(page, "Set-Cookie")
        if value.startswith("csrftoken=")
    )
    answer = front_door(
        host,
        site,
        "/admin/login/",
        method="POST",
        headers={
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"https://{site}",
            "Referer": f"https://{site}/admin/login/",
        },
        body=f"csrfmiddlewaretoken={token}&username=nobody&password=wrong&next=/admin/",
    )
    assert answer["status"] == 200, answer["status"]
    assert "correct username" in answer["body"]


def test_the_session_and_csrf_cookies_are_secure(host, site):
    page = front_door(host, site, "/admin/login/")
    cookies = header_values(page, "Set-Cookie")
    assert cookies and all("Secure" in cookie for cookie in cookies), cookies


def test_a_candidate_nginx_file_with_an_error_fails_the_check_and_the_live_file_stays(host):
    before = host.file(SITE_CONF).content_string
    run_ok(
        host,
        "sh",
        "-c",
        "printf 'server { listen 443 ssl; bogus_directive on; }\\n' > /tmp/bad.conf",
    )
    result = host.run(f"/usr/local/sbin/django_celery_nginx_check /tmp/bad.conf {SITE_CONF}")
    assert result.rc != 0 and "bogus_directive" in result.stderr, result.stderr
    assert host.file(SITE_CONF).content_string == before


def test_a_candidate_claiming_a_name_another_site_serves_fails_the_check(host):
    """The site's own file as another project's (its upstream renamed): same server names."""
    run_ok(
        host,
        "sh",
        "-c",
        f"sed 's/django_celery_{NAME}_/django_celery_copy_/g' {SITE_CONF} > /tmp/copy.conf",
    )
    copy = "/etc/nginx/conf.d/django_celery-copy.conf"
    result = host.run(f"/usr/local/sbin/django_celery_nginx_check /tmp/copy.conf {copy}")
    assert result.rc != 0 and "already served by another file" in result.stderr, result.stderr
    assert not host.file(copy).exists
