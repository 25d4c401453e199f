"""Trust boundary of the monitor (issue 15, items 7-10 and the hardening list; issue 16's
OIDC part): on a PostgreSQL store filled by a real run. Every forged or misconfigured case
is refused with a clear error (4xx, or a configuration error at load), and the REST API is
fuzzed on PostgreSQL without a single 5xx."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import ssl
import stat
import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import schemathesis
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from playwright.sync_api import sync_playwright
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import status_code_conformance

from epic_wfms.cli.main import cli
from epic_wfms.config import load_config
from epic_wfms.errors import ConfigurationError
from epic_wfms.model import naming
from epic_wfms.monitor.app import create_app
from epic_wfms.monitor.auth import Authenticator, AuthError, issue_token
from epic_wfms.monitor.keys import key_path
from epic_wfms.monitor.server import background_monitor
from loopback.panda.oidc import LoopbackIssuer
from tests.conftest import private_postgres_schema
from tests.monitor_helpers import bearer, installation, monitor_config

RUN = 361
IAM = "https://iam.epic.example/"


@pytest.fixture(scope="module")
def iam_key(tmp_path_factory) -> tuple[rsa.RSAPrivateKey, Path]:
    """Another issuer (IAM stand-in): its private key signs, its public key is configured."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("iam") / "iam.pem"
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, path


def iam_token(key: rsa.RSAPrivateKey, sub: str, lifetime: int = 600, **claims: object) -> str:
    now = int(time.time())
    return jwt.encode({"iss": IAM, "aud": "epic-wfms", "sub": sub, "iat": now,
                       "exp": now + lifetime, **claims}, key, algorithm="RS256")


def header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def inst(tmp_path_factory, iam_key):
    iam = {"issuer": IAM, "name": "iam", "public_key_path": str(iam_key[1]),
           "username_claim": "preferred_username", "groups_claim": "groups",
           "group_roles": {"/epic/production": ["production_manager"]},
           "user_roles": {"4f1c-olga": ["operator"]}}
    with private_postgres_schema() as url:
        config = monitor_config(tmp_path_factory.mktemp("trust-monitor") / "wfms", url,
                                issuers=[iam], user_roles={"olga": ["operator"]})
        installation_ = installation(config)
        installation_.daq.bring_up()
        installation_.daq.physics_run(RUN, 4)
        assert installation_.orchestrator.wait_run_finished(RUN, 60)
        yield installation_
        installation_.close()


@pytest.fixture(scope="module")
def client(inst):
    with TestClient(create_app(inst.config, inst.db, inst.bus)) as client:
        yield client


def refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["what"] and error["fix"]
    return error


# -- 7: NUL bytes are a 4xx on PostgreSQL ---------------------------------------------------------
NUL_PATHS = ["/api/v1/stfs/x%00y", "/api/v1/files/x%00y/provenance", "/api/v1/users/x%00y",
             "/api/v1/sites/x%00y", "/api/v1/runs?status=%00", "/api/v1/stfs?site=a%00",
             "/api/v1/jobs?stf=%00", "/api/v1/issues?kind=%00", "/api/v1/usage?user=%00",
             "/stfs/x%00y", "/users/%00", "/files/a%00", "/api/v1/stfs?sort=%00id"]


def test_nul_bytes_are_refused_before_the_store(client):
    for path in NUL_PATHS:
        refused(client.get(path), 400, "bad_parameter")
    refused(client.post("/api/v1/streaming/suspend", json={"reason": "a\u0000b"},
                        headers=bearer(client.app.state.monitor.config, "olga", "operator")),
            422, "validation_error")


# -- 8: roles by issuer + subject, never by a name the token chooses ------------------------------
def me(client, token: str) -> dict:
    response = client.get("/api/v1/users/me", headers=header(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_roles_follow_issuer_and_subject_not_names(client, iam_key):
    key, _ = iam_key
    config = client.app.state.monitor.config
    # the local olga has operator by configuration; IAM users called olga do not
    assert me(client, issue_token(config, "olga", []))["roles"] == ["operator"]
    impostor = iam_token(key, "mallory-uuid", preferred_username="olga")
    assert me(client, impostor) == {"user": "olga@iam", "roles": [], "authenticated": True}
    namesake = iam_token(key, "olga")  # the subject "olga", but at IAM: another identity
    assert me(client, namesake)["roles"] == []
    refused(client.post("/api/v1/streaming/suspend", json={"reason": "x"},
                        headers=header(impostor)), 403, "forbidden")
    # IAM's olga, by her subject; production managers by their group
    assert me(client, iam_token(key, "4f1c-olga", preferred_username="o"))["roles"] == [
        "operator"]
    manager = iam_token(key, "pm-uuid", groups=["/epic", "/epic/production"])
    assert me(client, manager)["roles"] == ["production_manager"]


# -- 9: issuers are checked when the configuration is loaded --------------------------------------
@pytest.mark.parametrize(("issuer", "expected"), [
    ({"issuer": IAM}, "needs exactly one key source"),
    ({"issuer": IAM, "public_key_path": "/nonexistent/iam.pem"}, "cannot be read"),
    ({"issuer": IAM, "algorithms": ["HS256"], "discovery": True}, "algorithms ['HS256']"),
    ({"issuer": IAM, "jwks_uri": "http://iam.example/jwks"}, "plain HTTP to another host"),
    ({"issuer": "http://iam.example/", "discovery": True}, "plain HTTP to another host"),
    ({"issuer": IAM, "discovery": True, "group_roles": {"/epic": ["user"]}},
     "set groups_claim"),
    ({"issuer": "epic-wfms-local", "jwks_uri": "https://iam.example/jwks"}, "used twice"),
])
def test_misconfigured_issuers_are_refused_at_load(tmp_path: Path, issuer, expected):
    path = tmp_path / "config.yaml"
    path.write_text(f"monitor: {{issuers: [{issuer!r}]}}\n".replace("'", '"'))
    with pytest.raises(ConfigurationError, match=expected.replace("[", r"\[")):
        load_config(path)
    result = CliRunner().invoke(cli, ["monitor", "--config", str(path)])
    assert result.exit_code == 1 and expected in result.output
    assert "Traceback" not in result.output


def test_a_key_file_that_is_not_a_public_key_is_refused(tmp_path: Path):
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigurationError, match="is not a PEM public key"):
        load_config(monitor={"issuers": [{"issuer": IAM, "public_key_path": str(bad)}]})


# -- 10: the roles claim's type is checked ---------------------------------------------------------
@pytest.mark.parametrize("roles", [7, {"admin": True}, ["admin", 7], [["admin"]]])
def test_a_roles_claim_of_another_type_is_refused(client, inst, roles):
    now = int(time.time())
    token = jwt.encode({"iss": inst.config.monitor.local_issuer, "aud": "epic-wfms",
                        "sub": "rita", "roles": roles, "iat": now, "exp": now + 60},
                       _local_key(inst), algorithm="RS256")
    error = refused(client.get("/api/v1/users/me", headers=header(token)), 401,
                    "invalid_token")
    assert "'roles' claim" in error["what"] and "list of names" in error["why"]


def _local_key(inst):
    return serialization.load_pem_private_key(key_path(inst.config).read_bytes(), None)


# -- hardening: tokens --------------------------------------------------------------------------
def test_subjects_lifetimes_and_algorithms(client, inst, iam_key):
    key, _ = iam_key
    for sub in ("", "  ", "anonymous", "Anonymous", "a\x00b", "x" * 300):
        error = refused(client.get("/api/v1/users/me", headers=header(iam_token(key, sub))),
                        401, "invalid_token")
        assert "subject" in error["what"]
    long_lived = iam_token(key, "ok-sub", lifetime=10 * 86400)
    assert "valid for" in refused(client.get("/api/v1/users/me", headers=header(long_lived)),
                                  401, "invalid_token")["what"]
    with pytest.raises(Exception, match="max_token_lifetime_s"):
        issue_token(inst.config, "olga", ["viewer"], ttl_s=30 * 86400)
    none_alg = jwt.encode({"iss": IAM, "aud": "epic-wfms", "sub": "x", "iat": 1,
                           "exp": int(time.time()) + 60}, None, algorithm="none")
    refused(client.get("/api/v1/users/me", headers=header(none_alg)), 401, "invalid_token")
    # HS256 keyed with the issuer's public key (which anyone has): the key-confusion attack
    forged = hs256({"iss": IAM, "aud": "epic-wfms", "sub": "x", "iat": int(time.time()),
                    "exp": int(time.time()) + 60}, iam_key[1].read_bytes())
    assert "signed with 'HS256'" in refused(
        client.get("/api/v1/users/me", headers=header(forged)), 401, "invalid_token")["what"]


def hs256(claims: dict, secret: bytes) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing = (part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
               + part(json.dumps(claims).encode()))
    return signing + "." + part(hmac.new(secret, signing.encode(), hashlib.sha256).digest())


def test_tokens_are_revocable_across_replicas(client, inst):
    config = inst.config
    one, two = issue_token(config, "rev", ["viewer"]), issue_token(config, "rev", ["viewer"])
    jti = jwt.decode(one, options={"verify_signature": False})["jti"]
    admin = bearer(config, "root-admin", "admin")
    assert client.post("/api/v1/tokens/revoke", json={"reason": "leaked", "jti": jti},
                       headers=header(two)).status_code == 403  # not admin, not own identity
    assert client.post("/api/v1/tokens/revoke", json={"reason": "leaked", "jti": jti},
                       headers=admin).status_code == 200
    with TestClient(create_app(config, inst.db, inst.bus)) as replica:
        for app in (client, replica):
            assert "revoked" in refused(app.get("/api/v1/users/me", headers=header(one)),
                                        401, "invalid_token")["what"]
            assert app.get("/api/v1/users/me", headers=header(two)).status_code == 200
        # anyone may revoke all of their own tokens
        assert replica.post("/api/v1/tokens/revoke", json={"reason": "laptop stolen"},
                            headers=header(two)).status_code == 200
        refused(replica.get("/api/v1/users/me", headers=header(two)), 401, "invalid_token")
    time.sleep(1.1)  # iat has one-second resolution: a token issued after the revocation
    fresh = issue_token(config, "rev", ["viewer"])
    assert client.get("/api/v1/users/me", headers=header(fresh)).status_code == 200
    result = CliRunner().invoke(cli, ["monitor", "revoke", "--subject", "cli-user", "--reason",
                                      "left", "--data-dir", str(config.data_dir)],
                                env={"EPIC_WFMS_DATABASE_URL": config.database_url})
    assert result.exit_code == 0 and "every token of cli-user" in result.output


# -- hardening: headers, docs, OpenAPI, files ----------------------------------------------------
def test_security_headers_and_api_docs_without_a_cdn(client):
    for path in ("/", "/api/v1/runs", "/static/live.js", "/api/v1/docs", "/api/v1/nothing"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert client.get("/api/v1/runs").headers["cache-control"] == "no-store"
    docs = client.get("/api/v1/docs").text
    assert "cdn" not in docs.lower() and "<script>" not in docs
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/api/v1/docs/assets/{asset}").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": schema["components"]["securitySchemes"]["HTTPBearer"]["description"]}
    assert {"HTTPBearer": []} in schema["paths"]["/api/v1/streaming/suspend"]["post"]["security"]


def test_data_directory_store_and_key_are_private(tmp_path: Path):
    config = monitor_config(tmp_path / "fresh")
    Authenticator(config)  # creates the local issuer's key
    from epic_wfms.installation import open_database
    open_database(config).dispose()
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(config.data_dir) == 0o700
    assert mode(config.data_dir / "bookkeeping.sqlite") == 0o600
    assert mode(key_path(config)) == 0o600 and mode(key_path(config).parent) == 0o700
    assert Authenticator(config).warnings == []
    key_path(config).chmod(0o644)
    (warning,) = Authenticator(config).warnings
    assert "readable by others" in warning and "chmod 600" in warning
    token = CliRunner().invoke(cli, ["monitor", "token", "--user", "u", "--role", "viewer",
                                     "--ttl", str(40 * 86400), "--data-dir",
                                     str(config.data_dir)])
    assert token.exit_code == 1 and "max_token_lifetime_s" in token.output


# -- hardening: reads in a production configuration ------------------------------------------------
SENSITIVE = ["/api/v1/usage", "/api/v1/users/olga", "/api/v1/commands", "/metrics",
             f"/api/v1/files/{naming.stf_filename(RUN, 0)}/provenance",
             f"/api/v1/stfs/{naming.stf_filename(RUN, 0)}", "/api/v1/jobs/1",
             "/api/v1/export/opensearch?limit=1", "/users", "/users/olga"]


def test_an_exposed_monitor_keeps_users_paths_and_exports_behind_a_token(inst):
    exposed = inst.config.monitor.model_copy(update={"host": "0.0.0.0"})
    config = inst.config.model_copy(update={"monitor": exposed})
    viewer = bearer(config, "vera", "viewer")
    with TestClient(create_app(config, inst.db, inst.bus)) as app:
        for path in ["/api/v1/runs", "/", *SENSITIVE]:
            refused(app.get(path, headers={"Accept": "application/json"}), 401,
                    "authentication_required")
            assert app.get(path, headers=viewer).status_code == 200, path
    public = config.monitor.model_copy(update={"reads_require_auth": False})
    with TestClient(create_app(config.model_copy(update={"monitor": public}), inst.db,
                               inst.bus)) as app:
        assert app.get("/api/v1/runs").status_code == 200  # operational reads: public
        for path in SENSITIVE:
            refused(app.get(path, headers={"Accept": "application/json"}), 401,
                    "authentication_required")


# -- hardening: a bounded number of event streams; TLS ---------------------------------------------
def self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_file = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_file


def test_event_streams_are_capped_and_tls_is_served(inst, tmp_path: Path):
    cert, key = self_signed(tmp_path)
    monitor = inst.config.monitor.model_copy(update={
        "max_event_streams": 1, "tls_certfile": cert, "tls_keyfile": key})
    config = inst.config.model_copy(update={"monitor": monitor})
    with background_monitor(config, inst.db, inst.bus, port=0) as url, \
            httpx.Client(verify=ssl.create_default_context(cafile=str(cert)),
                         timeout=10) as http:
        assert url.startswith("https://")
        page = http.get(url)
        assert page.status_code == 200 and "max-age" in page.headers["strict-transport-security"]
        opened = threading.Event()

        def hold_one_stream() -> None:
            with http.stream("GET", url + "api/v1/events?max_events=1") as stream:
                for _line in stream.iter_lines():
                    opened.set()
                    time.sleep(2)  # keep the stream open while the second one is refused
                    return

        holder = threading.Thread(target=hold_one_stream)
        holder.start()
        assert opened.wait(10)
        second = http.get(url + "api/v1/events?max_events=1")
        holder.join()
        assert refused(second, 429, "too_many_streams") and second.headers["retry-after"]
        with http.stream("GET", url + "api/v1/events?max_events=1") as again:
            assert again.status_code == 200  # the first one's place was given back
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(url.replace("https", "http"), timeout=5).raise_for_status()


def test_api_docs_and_pages_run_under_the_content_security_policy(inst):
    violations: list[str] = []
    with background_monitor(inst.config, inst.db, inst.bus, port=0) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("console", lambda m: violations.append(m.text)
                if "Content Security Policy" in m.text or "Refused" in m.text else None)
        page.goto(url + "api/v1/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "epic-wfms monitor" in page.inner_text(".swagger-ui .info .title")
        page.goto(url)
        page.wait_for_selector("#live-status.on", timeout=30_000)  # live.js runs
        browser.close()
    assert violations == []


# -- issue 16: OIDC discovery + JWKS, groups mapped to roles --------------------------------------
def test_tokens_of_an_oidc_issuer_found_by_discovery(inst):
    issuer = LoopbackIssuer().start()
    stranger = LoopbackIssuer().start()  # same audience, other issuer and key
    try:
        monitor = inst.config.monitor.model_copy(update={"issuers": [load_config(monitor={
            "issuers": [{"issuer": issuer.issuer, "name": "loopback", "discovery": True,
                         "groups_claim": "groups",
                         "group_roles": {"epic/production": ["production_manager"]}}]
        }).monitor.issuers[0]]})
        config = inst.config.model_copy(update={"monitor": monitor})
        auth = Authenticator(config)
        who = auth.verify(issuer.token("Paula Prod", ["epic", "epic/production"], 3600))
        assert (who.issuer, who.subject) == (issuer.issuer, "Paula-Prod")
        assert who.roles == {"production_manager"} and who.username == "Paula-Prod@loopback"
        auth.require(who, "job.control")
        with pytest.raises(AuthError, match=r"may not perform streaming\.control"):
            auth.require(who, "streaming.control")
        with pytest.raises(AuthError, match="not trusted"):
            auth.verify(stranger.token("Paula Prod", ["epic", "epic/production"], 3600))
    finally:
        issuer.stop()
        stranger.stop()


# -- the REST API fuzzed on PostgreSQL -----------------------------------------------------------
@pytest.fixture(scope="module")
def pg_schema(inst):
    app = create_app(inst.config, inst.db, inst.bus)
    config = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}},
                                           "generation": {"mode": "all"}})
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=config)


fuzzed = schemathesis.pytest.from_fixture("pg_schema").exclude(
    path_regex="/events$|/tokens/revoke$")


@fuzzed.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_rest_api_on_postgresql_gives_no_server_error(case, inst):
    """Positive and negative inputs, reads and writes (an admin token), on PostgreSQL."""
    token = bearer(inst.config, f"fuzz-{uuid.uuid4().hex[:6]}", "admin")
    case.call_and_validate(headers=token, checks=[not_a_server_error, status_code_conformance])

