"""Bearer-token authentication and roles (R13; docs/security.md).

Tokens are OIDC JWTs: signature (public-key algorithms only), issuer, audience, expiry, issue
time and a bounded lifetime are checked against the trusted issuers: the local issuer
(``epic-wfms monitor token``: tests, the demo, small installations) and ``monitor.issuers``
(IAM in production; keys from a PEM file, a JWKS, or the issuer's discovery document).

An identity is its issuer plus its subject (``iss`` + ``sub``); nothing is granted by a
name a token chooses for itself. Roles come from the token's roles claim, from its groups
mapped by ``group_roles`` (``groups`` / ``wlcg.groups``, as PanDA and iDDS read them), and
from ``user_roles`` by subject at that issuer. Each write names the permission it needs.

For other front ends (the MCP server): ``Authenticator(config).verify(token)`` gives the
``Principal`` (``issuer``, ``subject``, ``username``, ``roles``) or raises ``AuthError``;
``require(principal, permission)`` checks a permission.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from epic_wfms.config import Config, IssuerConfig
from epic_wfms.errors import EpicWfmsError
from epic_wfms.monitor.keys import (  # noqa: F401 (issue_token, local_private_key: public API)
    KeySource,
    KeyUnavailable,
    issue_token,
    key_file_warnings,
    local_private_key,
)
from epic_wfms.monitor.revocation import RevocationCache, Revocations
from epic_wfms.monitor.settings import LOCAL_NAME, ROLES

# who may do what: every read and write names its permission
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "read.sensitive": frozenset(ROLES),  # users, usage, commands, file paths, exports
    "streaming.control": frozenset({"operator", "admin"}),
    "job.control": frozenset({"production_manager", "operator", "admin"}),
    "priority": frozenset({"production_manager", "admin"}),
    "token.revoke": frozenset({"admin"}),  # anyone may revoke their own tokens
}
READS = ("read", "read.sensitive")
MAX_TOKEN_CHARS = 16_384
LEEWAY_S = 30
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AuthError(EpicWfmsError):
    """Authentication (401) or authorization (403) refused; carries its HTTP status."""

    def __init__(self, status: int, code: str, what: str, why: str = "", fix: str = "") -> None:
        super().__init__(what, why, fix)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``(issuer, subject)`` is the identity, ``username`` its display name
    (the subject at the local issuer, ``<name>@<issuer name>`` elsewhere)."""

    username: str
    roles: frozenset[str] = field(default_factory=frozenset)
    authenticated: bool = True
    issuer: str = ""
    subject: str = ""

    @property
    def identity(self) -> tuple[str, str]:
        return self.issuer, self.subject

    def may(self, permission: str) -> bool:
        return bool(self.roles & PERMISSIONS[permission])


ANONYMOUS = Principal("anonymous", frozenset({"viewer"}), authenticated=False)


class Authenticator:
    """Verifies bearer tokens against the trusted issuers of one configuration. Keys of PEM
    issuers (and the local one) are loaded here, so a broken key fails at start-up."""

    def __init__(self, config: Config,
                 revocations: Callable[[], Revocations] | None = None) -> None:
        self.config = config
        monitor = config.monitor
        local = IssuerConfig.model_construct(
            issuer=monitor.local_issuer, name=LOCAL_NAME, audience="epic-wfms",
            algorithms=["RS256"], roles_claim="roles", groups_claim=None, group_roles={},
            user_roles=monitor.user_roles, username_claim="sub")
        self._sources = {monitor.local_issuer: KeySource(
            local, local_private_key(config).public_key())}
        self._sources.update({i.issuer: KeySource(i) for i in monitor.issuers})
        self._revocations = RevocationCache(revocations or Revocations)
        self.warnings = key_file_warnings(config)

    def revocations_changed(self) -> None:
        self._revocations.invalidate()

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
        """The principal of a bearer token, or AuthError (401) saying why it is refused."""
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid(f"the token has {len(token)} characters",
                           f"tokens are at most {MAX_TOKEN_CHARS}")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise _invalid("the token is not a JWT", str(error)) from error
        iss = unverified.get("iss")
        source = self._sources.get(iss) if isinstance(iss, str) else None
        if source is None:
            raise _invalid(f"tokens from issuer {str(iss)[:200]!r} are not trusted",
                           f"trusted issuers: {', '.join(sorted(self._sources))}",
                           "get a token from a trusted issuer or add it to monitor.issuers")
        issuer = source.issuer
        if header.get("alg") not in issuer.algorithms:
            raise _invalid(f"the token is signed with {str(header.get('alg'))[:20]!r}",
                           f"{issuer.issuer} signs with {', '.join(issuer.algorithms)}")
        claims = self._checked_claims(token, source)
        return Principal(self._username(claims, issuer), self._roles(claims, issuer),
                         issuer=issuer.issuer, subject=claims["sub"])

    def _checked_claims(self, token: str, source: KeySource) -> dict[str, Any]:
        issuer = source.issuer
        try:
            claims = jwt.decode(token, source.key_for(token), algorithms=issuer.algorithms,
                                audience=issuer.audience, issuer=issuer.issuer, leeway=LEEWAY_S,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except KeyUnavailable as error:
            raise _invalid("the token cannot be verified now", f"{error.what}: {error.why}",
                           error.fix) from error
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
        lifetime = float(claims["exp"]) - float(claims["iat"])
        limit = self.config.monitor.max_token_lifetime_s
        if lifetime > limit:
            raise _invalid(f"the token is valid for {lifetime:.0f} s",
                           f"monitor.max_token_lifetime_s is {limit}",
                           "get a token with a shorter lifetime")
        subject = claims["sub"]
        if (not isinstance(subject, str) or not subject.strip() or len(subject) > 255
                or _CONTROL.search(subject) or subject.strip().lower() == "anonymous"):
            raise _invalid(f"the token's subject {str(subject)[:60]!r} is refused",
                           "a subject is a non-empty name (not 'anonymous') of at most 255 "
                           "printable characters", "get a token for a real identity")
        if reason := self._revocations.current().reason(claims):
            raise _invalid("the token has been revoked", reason, "get a new token")
        return claims

    @staticmethod
    def _username(claims: dict[str, Any], issuer: IssuerConfig) -> str:
        if issuer.name == LOCAL_NAME:
            return claims["sub"][:100]
        name = claims.get(issuer.username_claim)
        name = name if isinstance(name, str) and name.strip() else claims["sub"]
        suffix = "@" + issuer.display_name
        return _CONTROL.sub("", name)[: 100 - len(suffix)] + suffix

    @staticmethod
    def _roles(claims: dict[str, Any], issuer: IssuerConfig) -> frozenset[str]:
        granted = set(_names(claims, issuer.roles_claim))
        if issuer.groups_claim:
            mapping = {g.strip("/"): roles for g, roles in issuer.group_roles.items()}
            for group in _names(claims, issuer.groups_claim):
                granted.update(mapping.get(group.strip("/"), ()))
        granted.update(issuer.user_roles.get(claims["sub"], ()))
        return frozenset(granted & set(ROLES))

    def require(self, principal: Principal, permission: str) -> None:
        monitor = self.config.monitor
        if permission in READS:
            needed = (monitor.reads_need_token if permission == "read"
                      else monitor.sensitive_reads_need_token)
            if not needed:
                return  # open reads: anonymous or not, every caller may
            if not principal.authenticated:
                raise AuthError(401, "authentication_required",
                                "reading this needs a bearer token",
                                "this monitor serves beyond its host (monitor.host) or "
                                "monitor.reads_require_auth is set",
                                "send 'Authorization: Bearer <JWT>' (or sign in)")
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
                            "ask an admin for the role (user_roles or group_roles of your "
                            "issuer in monitor.issuers)")


def _names(claims: dict[str, Any], claim: str | None) -> list[str]:
    """A roles or groups claim: a list of names or one space-separated string; any other
    type refuses the token (a dict ``{admin: true}`` is not a list of roles)."""
    if not claim or claims.get(claim) is None:
        return []
    value = claims[claim]
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise _invalid(f"the token's {claim!r} claim is a {type(value).__name__}",
                   "it must be a list of names (or one space-separated string)",
                   "fix the issuer's claim mapping")


def _invalid(what: str, why: str, fix: str = "get a valid token from a trusted issuer"
             ) -> AuthError:
    return AuthError(401, "invalid_token", what, why, fix)
