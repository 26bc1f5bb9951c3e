"""The API behind a TLS proxy, against a real server process (Daphne's ``manage.py runserver``).

The server runs with the documented deployment settings (README "Deploying"): https redirect, HSTS,
secure cookies, ``SECURE_PROXY_SSL_HEADER`` and ``CSRF_TRUSTED_ORIGINS``. Requests come as the proxy
would pass them on (``X-Forwarded-Proto: https``, the public Host), over loopback HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings

from tests.conftest import free_port

PUBLIC_HOST = "sim.example.org"
ORIGIN = f"https://{PUBLIC_HOST}"
PASSWORD = "correct horse battery staple"
DEPLOY_ENV = {"ALLOWED_HOSTS": f"{PUBLIC_HOST},127.0.0.1", "YEETER_HTTPS": "1", "SECURE_HSTS_SECONDS": "31536000",
              "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1",
              "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https", "CSRF_TRUSTED_ORIGINS": ORIGIN}


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=timeout)


def base_env(data_dir: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir), "YEETER_DATA_DIR": str(data_dir),
            "SECRET_KEY": secrets.token_urlsafe(50)}


@dataclass
class Server:
    port: int
    log: Path
    api_key: str

    def request(self, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None,
                proxied: bool = True) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": PUBLIC_HOST, **({"X-Forwarded-Proto": "https"} if proxied else {}), **(headers or {})}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        response.body = response.read()
        conn.close()
        return response


def _wait_for(port: int, process: subprocess.Popen, log: Path, deadline_s: float = 90) -> None:
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not listen within {deadline_s} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("deployed")
    env = {**base_env(data_dir), **DEPLOY_ENV, "LOG_LEVEL": "INFO"}
    assert manage("migrate", "--noinput", "-v", "0", env=env).returncode == 0
    made = manage("createsuperuser", "--noinput", "--username", "boss", "--email", "boss@example.org",
                  env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD})
    assert made.returncode == 0, made.stderr
    key = manage("create_api_key", "deployed-ci", env=env)
    assert key.returncode == 0, key.stderr
    port = free_port()
    log = data_dir / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                   cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, process, log)
        yield Server(port=port, log=log, api_key=key.stdout.strip())
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    jar = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def _secure_flags(response: http.client.HTTPResponse) -> dict[str, bool]:
    return {h.split("=", 1)[0]: "secure" in h.lower() for h in response.headers.get_all("Set-Cookie") or []}


def staff_session(server: Server) -> dict[str, str]:
    """Log in through the browsable API's login form, as a browser behind the proxy does."""
    page = server.request("GET", "/api/auth/login/")
    assert page.status == 200, page.body[:300]
    cookies = _cookies(page)
    assert _secure_flags(page)["csrftoken"] is True
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
    login = server.request("POST", "/api/auth/login/", body=urlencode({
        "username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/api/simulator/"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN,
                 "Referer": f"{ORIGIN}/api/auth/login/", "Cookie": f"csrftoken={cookies['csrftoken']}"})
    assert login.status == 302, login.body[:500]
    assert _secure_flags(login)["sessionid"] is True
    return {**cookies, **_cookies(login)}


def staff_post(server: Server, cookies: dict[str, str], path: str, data: dict, *, origin: str = ORIGIN):
    return server.request("POST", path, body=json.dumps(data).encode(), headers={
        "Content-Type": "application/json", "Origin": origin, "X-CSRFToken": cookies["csrftoken"],
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})


def test_a_staff_session_post_through_the_tls_proxy_works(server: Server) -> None:
    cookies = staff_session(server)
    response = staff_post(server, cookies, "/api/simulator/endpoints",
                          {"name": "pacs", "kind": "storage", "host": "127.0.0.1", "port": 104, "ae_title": "PACS"})
    assert response.status == 201, response.body[:500]
    assert json.loads(response.body)["address"] == "PACS@127.0.0.1:104"


def test_a_post_from_an_untrusted_origin_is_still_refused(server: Server) -> None:
    cookies = staff_session(server)
    response = staff_post(server, cookies, "/api/simulator/endpoints",
                          {"name": "pacs2", "kind": "storage", "host": "127.0.0.1", "port": 104, "ae_title": "PACS"},
                          origin="https://evil.example")
    assert response.status == 403
    assert json.loads(response.body)["error"]["code"] == "permission_denied"


def test_plain_http_is_redirected_and_https_answers_carry_hsts(server: Server) -> None:
    plain = server.request("GET", "/api/simulator/exams", proxied=False)
    assert plain.status == 301 and plain.getheader("Location") == f"https://{PUBLIC_HOST}/api/simulator/exams"
    secure = server.request("GET", "/api/simulator/exams", headers={"X-API-Key": server.api_key})
    assert secure.status == 200
    assert secure.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains; preload"


def test_a_key_in_the_query_string_is_refused_and_never_written_to_the_access_log(server: Server) -> None:
    for name in ("api_key", "apikey", "key"):
        response = server.request("GET", f"/api/simulator/exams?modality=MR&{name}={server.api_key}")
        assert response.status == 401
        assert "not taken in the URL" in json.loads(response.body)["error"]["message"]
    ok = server.request("GET", "/api/simulator/exams?modality=MR", headers={"X-API-Key": server.api_key})
    assert ok.status == 200
    time.sleep(0.5)  # the access line is written once the response is sent
    log = server.log.read_text()
    assert "/api/simulator/exams?modality=MR&api_key=[redacted]" in log
    assert "GET /api/simulator/exams?modality=MR 200" in log  # the access log itself is kept
    assert server.api_key not in log and server.api_key[12:] not in log


def test_check_deploy_is_clean_with_the_documented_settings(tmp_path) -> None:
    result = manage("check", "--deploy", env={**base_env(tmp_path), **DEPLOY_ENV})
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr
    bare = manage("check", "--deploy", env=base_env(tmp_path))
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in bare.stderr + bare.stdout


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SECURE_PROXY_SSL_HEADER", "X Forwarded Proto", "must be a header and its value"),
    ("CSRF_TRUSTED_ORIGINS", "sim.example.org", "must list origins like https://sim.example.org"),
    ("SECURE_HSTS_SECONDS", "a year", "SECURE_HSTS_SECONDS must be an integer"),
    ("YEETER_HTTPS", "maybe", "YEETER_HTTPS must be a boolean"),
])
def test_bad_deployment_values_stop_start_up_with_a_sentence(tmp_path, name: str, value: str, message: str) -> None:
    result = manage("check", env={**base_env(tmp_path), name: value})
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("line", "scrubbed"), [
    ("GET /api/simulator/exams?api_key=yk_abc 401", "GET /api/simulator/exams?api_key=[redacted] 401"),
    ("GET /x?modality=MR&API_KEY=yk_abc&seed=1", "GET /x?modality=MR&API_KEY=[redacted]&seed=1"),
    ("GET /x?apikey=yk_a%2Fb&key=yk_c", "GET /x?apikey=[redacted]&key=[redacted]"),
    ("WSCONNECT /ws/runs/1/?x-api-key=yk_abc", "WSCONNECT /ws/runs/1/?x-api-key=[redacted]"),
    ("GET /x?monkey=banana&keyboard=1", "GET /x?monkey=banana&keyboard=1"),
])
def test_the_log_filter_redacts_only_key_parameters(line: str, scrubbed: str) -> None:
    import logging

    from yeeter.logfilters import ScrubQueryKeys

    record = logging.LogRecord("django.channels.server", logging.INFO, __file__, 1, "%s", (line,), None)
    assert ScrubQueryKeys().filter(record) is True
    assert record.getMessage() == scrubbed
