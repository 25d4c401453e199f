"""Configuration of the monitor (``monitor:``): listening, token issuers, roles, limits.

Everything that decides who may do what is checked when the configuration is loaded, so a
misconfigured issuer never reaches a request: an issuer without a key, a key file that is
missing or not a public key, a symmetric algorithm (``HS256``: whoever verifies could mint),
a key source over plain HTTP to another host, duplicate issuers. Each refusal says what to set.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlparse

from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["viewer", "user", "production_manager", "operator", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
# public-key algorithms only: with a shared secret (HS*) whoever can verify a token can mint one
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")
LOCAL_NAME = "local"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_url(url: str, what: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise ValueError(f"{what} {url!r} is not an http(s) URL")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise ValueError(f"{what} {url!r} is plain HTTP to another host: keys fetched that way "
                         "can be replaced on the network; use https")


class IssuerConfig(_Strict):
    """A trusted token issuer: tokens must carry its ``iss`` and our ``audience``, be signed
    with one of ``algorithms`` by a key from exactly one source: ``public_key_path`` (PEM),
    ``jwks_uri``, or ``discovery`` (the issuer's OpenID discovery document names its JWKS)."""

    issuer: str = Field(min_length=1, max_length=500)
    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}$",
        description="short name after user names (sub@name); default the issuer's host")
    audience: str = Field(default="epic-wfms", min_length=1)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)
    public_key_path: Path | None = Field(default=None, description="PEM public key")
    jwks_uri: str | None = Field(default=None, description="the issuer's JSON Web Key Set")
    discovery: bool = Field(default=False, description="find the JWKS by OpenID discovery")
    username_claim: str = Field(default="sub", min_length=1,
                                description="claim shown as the user name (before @name)")
    roles_claim: str | None = Field(default="roles", description="claim listing our roles")
    groups_claim: str | None = Field(
        default=None, description="claim listing the caller's groups, e.g. wlcg.groups")
    group_roles: dict[str, list[Role]] = Field(
        default_factory=dict, description="group (e.g. epic/production) -> roles")
    user_roles: dict[str, list[Role]] = Field(
        default_factory=dict, description="subject (sub) at this issuer -> roles")

    @model_validator(mode="after")
    def _usable(self) -> IssuerConfig:
        sources = [s for s, given in (("public_key_path", self.public_key_path is not None),
                                      ("jwks_uri", self.jwks_uri is not None),
                                      ("discovery", self.discovery)) if given]
        if len(sources) != 1:
            raise ValueError(
                f"issuer {self.issuer!r} needs exactly one key source, has "
                f"{', '.join(sources) or 'none'}: set public_key_path (a PEM public key), "
                "jwks_uri, or discovery: true")
        if bad := [a for a in self.algorithms if a not in ASYMMETRIC]:
            raise ValueError(
                f"issuer {self.issuer!r}: algorithms {bad} are refused (a shared secret lets "
                f"whoever verifies tokens mint them); use public-key ones: {', '.join(ASYMMETRIC)}")
        if self.public_key_path is not None:
            _check_public_key(self.public_key_path, self.issuer)
        if self.jwks_uri is not None:
            check_key_url(self.jwks_uri, f"issuer {self.issuer!r}: jwks_uri")
        if self.discovery:
            check_key_url(self.issuer, "issuer (discovery is fetched from it)")
        if self.group_roles and not self.groups_claim:
            raise ValueError(f"issuer {self.issuer!r} maps group_roles but names no "
                             "groups_claim: set groups_claim (e.g. groups or wlcg.groups)")
        return self

    @property
    def display_name(self) -> str:
        return self.name or urlparse(self.issuer).hostname or self.issuer[:40]


def _check_public_key(path: Path, issuer: str) -> None:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"issuer {issuer!r}: public_key_path {path} cannot be read "
                         f"({error.strerror or error}); give the PEM file of its public key"
                         ) from None
    try:
        serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError(f"issuer {issuer!r}: {path} is not a PEM public key (-----BEGIN "
                         "PUBLIC KEY-----); export the issuer's public key") from None


class NotificationRule(_Strict):
    """Deliver a JSON notification to ``webhook`` when the condition starts to hold (R10.12)."""

    name: str
    kind: Literal["state_change", "failure_rate", "latency_slo", "backlog"]
    webhook: str
    threshold: float = Field(default=0.0, ge=0, description="fraction, seconds or STFs by kind")
    window_s: float = Field(default=600.0, gt=0, description="look-back for rates and latency")
    states: list[str] = Field(default_factory=list, description="state_change: only these")


class MonitorConfig(_Strict):
    """The web monitor and REST API (docs/monitor.md, docs/security.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    reads_require_auth: bool | None = Field(
        default=None, description="every read needs a token; null: when host is not loopback")
    sensitive_reads_require_auth: bool | None = Field(
        default=None, description="reads of users, usage, commands, file paths and exports "
        "need a token; null: when host is not loopback")
    local_issuer: str = Field(default="epic-wfms-local", min_length=1)
    issuers: list[IssuerConfig] = Field(default_factory=list)
    user_roles: dict[str, list[Role]] = Field(
        default_factory=dict, description="subject at the local issuer -> roles")
    max_token_lifetime_s: int = Field(
        default=12 * 3600, gt=0, le=30 * 86400,
        description="tokens valid longer (exp - iat) are refused, as local ones are not minted")
    max_event_streams: int = Field(default=64, ge=1, le=10_000,
                                   description="open /api/v1/events streams at once")
    tls_certfile: Path | None = Field(default=None, description="serve HTTPS with this cert")
    tls_keyfile: Path | None = Field(default=None, description="and its private key")
    live_poll_s: float = Field(default=1.0, gt=0, description="store poll period of live pages")
    notify_poll_s: float = Field(default=5.0, gt=0)
    notifications: list[NotificationRule] = Field(default_factory=list)
    harvester_db: str | None = Field(
        default=None, description="Harvester's database (its SQLite file or a SQLAlchemy URL) "
        "for the /harvester page")
    bigmon_url: str | None = Field(
        default=None, pattern=r"^https?://",
        description="PanDA's monitor (BigMon) base URL: task and job pages link to it")

    @model_validator(mode="after")
    def _consistent(self) -> MonitorConfig:
        seen: dict[str, str] = {self.local_issuer: "local_issuer", LOCAL_NAME: "local_issuer"}
        for item in self.issuers:
            for key in (item.issuer, item.display_name):
                if key in seen:
                    raise ValueError(f"monitor.issuers: {key!r} is used twice (also by "
                                     f"{seen[key]}); give each issuer its own issuer and name")
                seen[key] = item.issuer
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("monitor.tls_certfile and monitor.tls_keyfile go together: set "
                             "both (or neither, behind a TLS-terminating reverse proxy)")
        for path in (self.tls_certfile, self.tls_keyfile):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"monitor TLS file {path} does not exist")
        return self

    @property
    def exposed(self) -> bool:
        """Listening beyond this host: the production configuration."""
        return not is_loopback(self.host)

    @property
    def reads_need_token(self) -> bool:
        return self.exposed if self.reads_require_auth is None else self.reads_require_auth

    @property
    def sensitive_reads_need_token(self) -> bool:
        if self.sensitive_reads_require_auth is None:
            return self.exposed or self.reads_need_token
        return self.sensitive_reads_require_auth or self.reads_need_token
