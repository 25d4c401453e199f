"""Where token signatures are checked against: the local issuer's key, a PEM public key, or
an OIDC issuer's JSON Web Key Set (named directly, or found by its discovery document).

The local issuer (``epic-wfms monitor token``; tests, the demo, small installations) keeps
an RSA key in ``<data_dir>/monitor/local_issuer.pem``, created 0600 in a 0700 directory; a key
file others can read is reported (``key_file_warnings``). OIDC keys are fetched over HTTPS
(plain HTTP only on loopback) with a timeout, cached, and refetched when a token names a key
id the cache does not hold (key rotation).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from epic_wfms.config import Config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.monitor.settings import ROLES, IssuerConfig, check_key_url
from epic_wfms.security.files import private_directory

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 5.0
RETRY_AFTER_FAILURE_S = 10.0


class KeyUnavailable(EpicWfmsError):
    """The issuer's keys could not be fetched (network, a broken discovery document)."""


def key_path(config: Config) -> Path:
    return Path(config.data_dir) / "monitor" / "local_issuer.pem"


_LOADED: dict[Path, rsa.RSAPrivateKey] = {}  # loading checks the key: ~0.1 s, so once
_LOCK = threading.Lock()


def local_private_key(config: Config) -> rsa.RSAPrivateKey:
    """The local issuer's key, created on first use (0600 in a 0700 directory)."""
    path = key_path(config).resolve()
    with _LOCK:
        if path in _LOADED:
            return _LOADED[path]
        if not path.exists():
            private_directory(Path(config.data_dir))
            path.parent.mkdir(exist_ok=True, mode=0o700)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
        for warning in key_file_warnings(config):
            log.warning("%s", warning)
        _LOADED[path] = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return _LOADED[path]


def key_file_warnings(config: Config) -> list[str]:
    """The local issuer's key must be readable by its owner only: anyone else who can read it
    can mint tokens with any role."""
    path = key_path(config)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if mode & 0o077:
        return [f"the local issuer's key {path} is readable by others (mode {mode:o}): anyone "
                f"who can read it can mint admin tokens; run chmod 600 {path}"]
    return []


def issue_token(config: Config, username: str, roles: list[str], ttl_s: float = 3600,
                audience: str = "epic-wfms") -> str:
    """A token from the local issuer, with a unique ``jti`` (revocable) and a lifetime of at
    most ``monitor.max_token_lifetime_s``."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise EpicWfmsError(f"unknown roles {sorted(unknown)}", f"roles are {', '.join(ROLES)}",
                            "pick roles from that list")
    limit = config.monitor.max_token_lifetime_s
    if ttl_s > limit:
        raise EpicWfmsError(f"a token valid for {ttl_s:.0f} s is refused",
                            f"monitor.max_token_lifetime_s is {limit}",
                            f"ask for at most {limit} s (--ttl) and renew it")
    now = int(time.time())
    claims = {"iss": config.monitor.local_issuer, "aud": audience, "sub": username,
              "preferred_username": username, "roles": list(roles), "iat": now,
              "exp": now + int(ttl_s), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, local_private_key(config), algorithm="RS256")


class KeySource:
    """The verification key of one trusted issuer."""

    def __init__(self, issuer: IssuerConfig, local_key: Any | None = None) -> None:
        self.issuer = issuer
        self._static = local_key
        self._jwks: jwt.PyJWKClient | None = None
        self._failed_at = 0.0
        self._lock = threading.Lock()
        if issuer.public_key_path is not None:
            self._static = serialization.load_pem_public_key(
                Path(issuer.public_key_path).read_bytes())
        elif issuer.jwks_uri is not None:
            self._jwks = self._client(issuer.jwks_uri)

    @staticmethod
    def _client(uri: str) -> jwt.PyJWKClient:
        return jwt.PyJWKClient(uri, cache_keys=True, lifespan=300, timeout=FETCH_TIMEOUT_S)

    def key_for(self, token: str) -> Any:
        if self._static is not None:
            return self._static
        client = self._jwks or self._discover()
        try:
            return client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as error:
            raise KeyUnavailable(f"the keys of {self.issuer.issuer} cannot be fetched",
                                 str(error), "check that the issuer is reachable") from None

    def _discover(self) -> jwt.PyJWKClient:
        """The JWKS named by the issuer's discovery document (fetched once; after a failure
        not again for ``RETRY_AFTER_FAILURE_S``)."""
        with self._lock:
            if self._jwks is not None:
                return self._jwks
            if time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
                raise KeyUnavailable(f"the discovery document of {self.issuer.issuer} could "
                                     "not be read recently", "", "retry in a few seconds")
            url = self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                document = httpx.get(url, timeout=FETCH_TIMEOUT_S).raise_for_status().json()
                if document.get("issuer") != self.issuer.issuer:
                    raise ValueError(f"it names the issuer {document.get('issuer')!r}")
                check_key_url(str(document["jwks_uri"]), "its jwks_uri")
            except (httpx.HTTPError, ValueError, KeyError, AttributeError) as error:
                self._failed_at = time.monotonic()
                raise KeyUnavailable(f"the discovery document {url} is unusable", str(error),
                                     "check the issuer URL in monitor.issuers") from None
            self._jwks = self._client(str(document["jwks_uri"]))
            return self._jwks
