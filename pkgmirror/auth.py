"""
Passwords and login tokens: pure functions, no I/O.

Passwords are stored as salted scrypt hashes (stdlib ``hashlib.scrypt``: a memory-hard KDF with
no extra dependency). Hashing costs tens of milliseconds on purpose, so callers run it in a
thread. Tokens are HMAC-signed ``user, expiry`` pairs; the signing secret lives in storage, so
tokens survive restarts and work on every node that shares the storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

import attrs

# 2**14 x 8 x 1 takes ~40 ms and 16 MiB: slow for a guesser, cheap enough for one login.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
DEFAULT_TOKEN_TTL = 10 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = _SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; an empty stored hash matches only ''."""
    if not stored:
        return password == ""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_unb64(digest)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, _unb64(digest))


def new_secret() -> str:
    return secrets.token_hex(32)


@attrs.frozen
class TokenCheck:
    user: str | None
    reason: str = ""


def make_token(secret: str, user: str, now: float, ttl: int = DEFAULT_TOKEN_TTL) -> str:
    payload = _b64(json.dumps([user, int(now + ttl)], separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def check_token(secret: str, token: str, now: float) -> TokenCheck:
    """The user a token names, or None with the reason it is refused."""
    payload, _, signature = token.partition(".")
    try:
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return TokenCheck(None, "invalid token")
        user, expires = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return TokenCheck(None, "invalid token")
    if not isinstance(user, str) or not isinstance(expires, int):
        return TokenCheck(None, "invalid token")
    if now >= expires:
        return TokenCheck(None, "token expired, log in again")
    return TokenCheck(user)
