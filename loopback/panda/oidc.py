"""A loopback OIDC token issuer for the local PanDA server.

PanDA authenticates bearer tokens by fetching the issuer's discovery document and JWKS
(``pandaserver.srvcore.oidc_utils``). In production the issuer is ePIC's IAM; on loopback
this issuer plays that part with its own RSA key, so the server runs its real token checks
(signature, audience, issuer, VO groups and the production role) against our requests.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_ID = "epic-wfms-loopback"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class LoopbackIssuer:
    """Serves ``/.well-known/openid-configuration`` and ``/jwks`` on 127.0.0.1; mints tokens."""

    def __init__(self, client_id: str = "epic-wfms") -> None:
        self.client_id = client_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> LoopbackIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def jwks(self) -> dict:
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KEY_ID,
                          "n": _b64(numbers.n), "e": _b64(numbers.e)}]}

    def token(self, name: str, groups: list[str], lifetime_s: int = 86400) -> str:
        """An ID token for ``name`` with VO ``groups`` (e.g. ``["epic", "epic/production"]``)."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "sub": name.replace(" ", "-"),
                  "name": name, "preferred_username": name.split()[0].lower(),
                  "groups": groups, "iat": now, "exp": now + lifetime_s}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KEY_ID})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.issuer, "jwks_uri": f"{issuer.issuer}/jwks"}
                elif self.path == "/jwks":
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
