"""Bearer-token authentication and roles (R13).

Tokens are OIDC-style JWTs: signature, issuer, audience and expiry are checked against the
configured issuers. A local issuer (RSA key kept in the data directory) signs tokens for tests
and the demo (``epic-wfms monitor token``). Roles come from the token's roles claim plus
``monitor.user_roles``; each write names the roles allowed to make it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from epic_wfms.config import Config, IssuerConfig
from epic_wfms.errors import EpicWfmsError

ROLES = ("viewer", "user", "production_manager", "operator", "admin")

# who may do what: every write names its permission
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "streaming.control": frozenset({"operator", "admin"}),
    "job.control": frozenset({"production_manager", "operator", "admin"}),
    "priority": frozenset({"production_manager", "admin"}),
}


class AuthError(EpicWfmsError):
    """Authentication (401) or authorization (403) refused; carries its HTTP status."""

    def __init__(self, status: int, code: str, what: str, why: str = "", fix: str = "") -> None:
        super().__init__(what, why, fix)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Principal:
    username: str
    roles: frozenset[str] = field(default_factory=frozenset)
    authenticated: bool = True

    def may(self, permission: str) -> bool:
        return bool(self.roles & PERMISSIONS[permission])


ANONYMOUS = Principal("anonymous", frozenset({"viewer"}), authenticated=False)


def _key_path(config: Config) -> Path:
    return Path(config.data_dir) / "monitor" / "local_issuer.pem"


_LOADED: dict[Path, rsa.RSAPrivateKey] = {}  # loading checks the key: ~0.1 s, so once


def local_private_key(config: Config) -> rsa.RSAPrivateKey:
    """The local issuer's key, created on first use (0600) so tokens survive restarts."""
    path = _key_path(config).resolve()
    if path in _LOADED:
        return _LOADED[path]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path.touch(mode=0o600)
        path.write_bytes(pem)
    _LOADED[path] = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return _LOADED[path]


def issue_token(config: Config, username: str, roles: list[str], ttl_s: float = 3600,
                audience: str = "epic-wfms") -> str:
    """A token from the local issuer (tests, demo, operators without an OIDC provider)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise EpicWfmsError(f"unknown roles {sorted(unknown)}", f"roles are {', '.join(ROLES)}",
                            "pick roles from that list")
    now = int(time.time())
    claims = {"iss": config.monitor.local_issuer, "aud": audience, "sub": username,
              "preferred_username": username, "roles": list(roles), "iat": now,
              "exp": now + int(ttl_s)}
    return jwt.encode(claims, local_private_key(config), algorithm="RS256")


class Authenticator:
    """Verifies bearer tokens against the trusted issuers of one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        local = IssuerConfig(issuer=config.monitor.local_issuer)
        self._issuers = {i.issuer: i for i in [local, *config.monitor.issuers]}
        self._keys: dict[str, object] = {}

    def _key(self, issuer: IssuerConfig) -> object:
        if issuer.issuer not in self._keys:
            if issuer.public_key_path is None:
                self._keys[issuer.issuer] = local_private_key(self.config).public_key()
            else:
                self._keys[issuer.issuer] = serialization.load_pem_public_key(
                    Path(issuer.public_key_path).read_bytes())
        return self._keys[issuer.issuer]

    def principal(self, authorization: str | None) -> Principal:
        """The caller of a request from its Authorization header (ANONYMOUS if none)."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "bad_authorization_header",
                            "the Authorization header is not 'Bearer <token>'",
                            f"it starts with {scheme[:20]!r}",
                            "send 'Authorization: Bearer <JWT>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> Principal:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise _invalid("the token is not a JWT", str(error)) from error
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise _invalid(f"tokens from issuer {unverified.get('iss')!r} are not trusted",
                           f"trusted issuers: {', '.join(sorted(self._issuers))}",
                           "get a token from a trusted issuer or add it to monitor.issuers")
        try:
            claims = jwt.decode(token, self._key(issuer), algorithms=issuer.algorithms,
                                audience=issuer.audience, issuer=issuer.issuer,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as error:
            raise _invalid("the token has expired", str(error),
                           "get a fresh token (epic-wfms monitor token)") from error
        except jwt.InvalidAudienceError as error:
            raise _invalid("the token is for another audience", str(error),
                           f"request a token with audience {issuer.audience!r}") from error
        except jwt.InvalidSignatureError as error:
            raise _invalid("the token's signature does not verify", str(error),
                           "the token was altered or signed by another key") from error
        except jwt.PyJWTError as error:
            raise _invalid("the token is invalid", str(error)) from error
        username = str(claims.get("preferred_username") or claims["sub"])
        roles = claims.get(issuer.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        granted = set(roles) | set(self.config.monitor.user_roles.get(username, []))
        return Principal(username, frozenset(granted & set(ROLES)))

    def require(self, principal: Principal, permission: str) -> None:
        if permission == "read" and not principal.authenticated:
            if self.config.monitor.reads_require_auth:
                raise AuthError(401, "authentication_required", "reading needs a bearer token",
                                "monitor.reads_require_auth is true",
                                "send 'Authorization: Bearer <JWT>'")
            return
        if not principal.authenticated:
            raise AuthError(401, "authentication_required",
                            f"this operation ({permission}) needs a bearer token",
                            "writes are never anonymous",
                            "send 'Authorization: Bearer <JWT>' from a trusted issuer")
        if not principal.may(permission):
            allowed = ", ".join(sorted(PERMISSIONS[permission]))
            raise AuthError(403, "forbidden",
                            f"{principal.username} may not perform {permission}",
                            f"it needs one of the roles {allowed}; the caller has "
                            f"{', '.join(sorted(principal.roles)) or 'no roles'}",
                            "ask an admin for the role (monitor.user_roles or your issuer)")


def _invalid(what: str, why: str, fix: str = "get a valid token from a trusted issuer"
             ) -> AuthError:
    return AuthError(401, "invalid_token", what, why, fix)
