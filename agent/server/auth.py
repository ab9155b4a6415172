"""Who may talk to the server: a bearer token, or nobody but this machine.

Policy (the README says the same):
- With a token (`server.token`, or the environment variable named by `server.token_env`), every `/v1/*`
  endpoint and `/metrics` require `Authorization: Bearer <token>`; the dashboard pages accept the same header
  or a session cookie set by its login form (an HMAC of the token, never the token itself). `/healthz`,
  `/docs` and `/openapi.json` stay open: they reveal nothing stored.
- Without a token the server binds only to a loopback address (127.0.0.1, ::1, localhost) and asks for nothing.
Writes (ingest) accept only the header, never the cookie, so a page elsewhere cannot make a browser post signals.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from agent.config import Config
from agent.errors import InputError

COOKIE = "selfheal_session"
LOOPBACK_NAMES = ("localhost",)


def resolve_token(cfg: Config) -> str | None:
    """The configured token: `server.token`, else the variable named by `server.token_env`; blank means none."""
    token = cfg.server.token
    if not token and cfg.server.token_env:
        token = os.environ.get(cfg.server.token_env)
    token = (token or "").strip()
    return token or None


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, env_name: str | None) -> None:
    """Refuse to listen beyond this machine without a token: anyone could post signals or read issues."""
    if token is None and not is_loopback(host):
        where = f"server.token or ${env_name}" if env_name else "server.token"
        raise InputError(f"refusing to listen on {host} without a token: set {where}, or bind to 127.0.0.1")


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def token_matches(given: str | None, token: str) -> bool:
    # compare_digest on bytes: constant time whatever the given value holds (non-ASCII text included)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"selfheal dashboard session", hashlib.sha256).hexdigest()


def session_matches(cookie: str | None, token: str) -> bool:
    return cookie is not None and hmac.compare_digest(cookie.encode(), session_value(token).encode())
