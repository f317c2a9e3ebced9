"""Who may change things through HTTP: the credentials a request must carry,
and the refusal of requests another site's page sent. The JSON API and the
dashboard ask the same questions here, so each rule lives in one place.

``Credentials(auth)``: ``auth="token"`` takes ``Authorization: Bearer token``,
``auth=("user", "password")`` basic auth; None takes nothing (read-only).
Secrets are compared in constant time. A browser that logged in to the
dashboard with the token holds a cookie (COOKIE) whose value is an HMAC of the
token, never the token itself; it counts as the token.

``cross_site(request)``: a request is refused as cross-site when its
``Sec-Fetch-Site`` is present and neither ``same-origin`` nor ``none``, or when
its ``Origin`` names another host than its ``Host`` header, so that a page in
the operator's browser cannot use remembered credentials.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import urllib.parse

from starlette.requests import Request

__all__ = ["COOKIE", "Auth", "Credentials", "Scheme", "cross_site"]

# A bearer token, or a (user, password) pair for basic auth.
Auth = str | tuple[str, str]

COOKIE = "jobarbiter_auth"
# What the cookie's HMAC signs, keyed by the token: a fixed text, so the
# cookie holds across restarts and across the processes of one service.
_COOKIE_MESSAGE = b"jobarbiter dashboard login"


class Scheme(enum.StrEnum):
    BASIC = "basic"
    BEARER = "bearer"


class Credentials:
    """What a request that changes something must carry."""

    def __init__(self, auth: Auth | None) -> None:
        self.scheme: Scheme | None = None
        self._secret = b""
        if auth is None:
            return
        if isinstance(auth, str):
            if not auth:
                raise ValueError("auth token is empty: it would let anyone in")
            self.scheme, self._secret = Scheme.BEARER, auth.encode()
        elif isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(s, str) for s in auth):
            user, password = auth
            if not user or not password:
                raise ValueError("auth user and password must both be non-empty")
            if ":" in user:
                raise ValueError("a basic-auth user name cannot contain ':'")
            self.scheme, self._secret = Scheme.BASIC, f"{user}:{password}".encode()
        else:
            raise TypeError("auth is a token (str) or a (user, password) tuple of str")

    def refusal(self, request: Request) -> str | None:
        """Why the request may not change anything, or None."""
        if self.scheme is None:
            return "read-only: this service takes no change unless it was given auth"
        given = request.headers.get("authorization")
        if given is None:
            if self.scheme is Scheme.BEARER and COOKIE in request.cookies:
                if self._matches(request.cookies[COOKIE].encode(), self.cookie().encode()):
                    return None
                return "wrong credentials (a stale login cookie: log in again)"
            return "credentials required (Authorization header, or log in)"
        scheme, _, value = given.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != self.scheme:
            return f"wrong credentials (expected {self.scheme.title()} auth)"
        if self.scheme is Scheme.BASIC:
            try:
                presented = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return "wrong credentials"
        else:
            presented = value.encode()
        if not self._matches(presented, self._secret):
            return "wrong credentials"
        return None

    def reveals(self, request: Request) -> bool:
        """Whether the request may see a job's decoded arguments: anyone's
        when no credentials are configured, else only a credited one's."""
        return self.scheme is None or self.refusal(request) is None

    def token_matches(self, token: str) -> bool:
        """Whether ``token`` (typed into the login form) is the bearer token."""
        return self.scheme is Scheme.BEARER and self._matches(token.encode(), self._secret)

    def cookie(self) -> str:
        """The login cookie's value for the bearer token."""
        if self.scheme is not Scheme.BEARER:
            raise ValueError("only a bearer token logs in with a cookie")
        return hmac.new(self._secret, _COOKIE_MESSAGE, hashlib.sha256).hexdigest()

    @staticmethod
    def _matches(presented: bytes, expected: bytes) -> bool:
        # In constant time: how much of a guess matches must not show in how
        # long it takes to refuse it.
        return hmac.compare_digest(presented, expected)


def cross_site(request: Request) -> str | None:
    """Why the request looks sent by another site's page, or None."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    origin = request.headers.get("origin")
    if origin is not None and not _same_host(origin, request.headers.get("host", "")):
        return f"cross-site request refused (Origin {origin} is not this host)"
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _same_host(origin: str, host: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(origin)
        served = urllib.parse.urlsplit(f"//{host}")
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or not served.hostname:
            return False  # "null", a file: page, no Host: nothing to match
        default = _DEFAULT_PORTS[parts.scheme]
        return (parts.hostname, parts.port or default) == (
            served.hostname,
            served.port or default,
        )
    except ValueError:  # a port that is no number
        return False
