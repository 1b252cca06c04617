"""TaskFlow's authentication policy written in Python (componentize-py).

It implements the same `taskflow:auth@0.3.0` world as the Rust policy: it
checks passwords, issues `at+jwt` access tokens and makes every Bearer
decision. HS256 tokens are signed and verified here with `hmac`/`hashlib`;
argon2id and Ed25519, which the standard library lacks (or runs far too
slowly in pure Python), come from the host's optional `primitives` import.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time

# componentize-py bundles the modules imported while it builds, not those
# imported later: `hmac` imports `warnings` only when first used.
import warnings  # noqa: F401

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, primitives
from wit_world.imports.types import (
    AccessDenial_InsufficientScope,
    AccessDenial_InvalidToken,
    AccessDenial_NoCredentials,
    AccessDenial_Unavailable,
    KeyAlgorithm,
    PolicyInfo,
    Principal,
    TokenClaims,
    TokenError_InvalidGrant,
    TokenError_InvalidRequest,
    TokenError_InvalidScope,
    TokenError_Unavailable,
    TokenGrant,
)

NAME = "guest-python"
VERSION = "0.1.0"
ACCESS_TOKEN_TYPE = "at+jwt"
MAX_TOKEN_BYTES = 4096
MAX_LEEWAY_SECONDS = 60
MIN_HS256_KEY_BYTES = 32
ED25519_SEED_BYTES = 32
# Checked when the user does not exist, so that an unknown user costs the
# same argon2 work as a wrong password. policy-kit's, same parameters.
DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$dGFza2Zsb3ctZHVtbXk$c2lRYWl6SFlvTW9PTGJmTTV4MmZuSXZ0V0ZBd2R3aEU"
JOSE_NAMES = {KeyAlgorithm.HS256: "HS256", KeyAlgorithm.ED_DSA: "EdDSA"}
B64URL = re.compile(r"[A-Za-z0-9_-]*")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class Rejected(Exception):
    """A token that is not valid; the message says why (to the client)."""


class Unusable(Exception):
    """Settings the policy cannot work with (an operator's problem)."""


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict unpadded base64url: no padding, no stray characters, no
    non-zero trailing bits (so no two texts decode to the same bytes)."""
    if not B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise Rejected("the token is malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Rejected("the token is malformed")
    if b64encode(data) != text:
        raise Rejected("the token is malformed")
    return data


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member")
    return dict(pairs)


def parse_json_object(data: bytes) -> dict:
    def no_constants(name):
        raise ValueError(name)

    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=no_duplicates,
            parse_constant=no_constants,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected("the token is malformed")
    if not isinstance(value, dict):
        raise Rejected("the token is malformed")
    return value


def usable_keys(keys):
    if not keys:
        raise Unusable("no signing key is configured")
    for key in keys:
        if key.algorithm == KeyAlgorithm.HS256 and len(key.secret) < MIN_HS256_KEY_BYTES:
            raise Unusable(f"signing key `{key.kid}` is shorter than {MIN_HS256_KEY_BYTES} bytes")
        if key.algorithm == KeyAlgorithm.ED_DSA and len(key.secret) != ED25519_SEED_BYTES:
            raise Unusable(f"Ed25519 key `{key.kid}` is not a {ED25519_SEED_BYTES}-byte seed")
    return keys


def sign(key, claims: dict) -> str:
    header = {"alg": JOSE_NAMES[key.algorithm], "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
    compact = lambda value: b64encode(json.dumps(value, separators=(",", ":")).encode())
    message = compact(header) + "." + compact(claims)
    if key.algorithm == KeyAlgorithm.HS256:
        signature = hmac.new(key.secret, message.encode(), hashlib.sha256).digest()
    else:
        signature = primitives.ed25519_sign(key.secret, message.encode())
    return message + "." + b64encode(signature)


def signature_valid(key, message: bytes, signature: bytes) -> bool:
    if key.algorithm == KeyAlgorithm.HS256:
        expected = hmac.new(key.secret, message, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)
    public = primitives.ed25519_public_key(key.secret)
    return primitives.ed25519_verify(public, message, signature)


def is_uint(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def verify(token: str, settings, now: int) -> dict:
    """The token's claims if it is valid (RFC 8725: only our algorithms,
    the key its `kid` names and that key's own algorithm, `typ`, no `crit`,
    then the claims), else `Rejected`."""
    keys = usable_keys(settings.signing_keys)
    if len(token) > MAX_TOKEN_BYTES:
        raise Rejected(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected("the token is malformed")
    header_b64, payload_b64, signature_b64 = parts
    header = parse_json_object(b64decode(header_b64))
    alg = header.get("alg")
    if alg not in ("HS256", "EdDSA"):
        raise Rejected("the token's algorithm is not accepted")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (ACCESS_TOKEN_TYPE, "application/at+jwt"):
        raise Rejected("the token's typ must be at+jwt")
    if "crit" in header:
        raise Rejected("the token has a critical header extension this service does not support")
    kid = header.get("kid")
    if kid is None:
        raise Rejected("the token names no signing key (kid)")
    if not isinstance(kid, str):
        raise Rejected("the token is malformed")
    key = next((k for k in keys if k.kid == kid), None)
    if key is None:
        raise Rejected("the token's signing key (kid) is unknown")
    if alg != JOSE_NAMES[key.algorithm]:
        raise Rejected("the token's algorithm is not accepted")
    signature = b64decode(signature_b64)
    if not signature_valid(key, f"{header_b64}.{payload_b64}".encode(), signature):
        raise Rejected("the token's signature is invalid")
    claims = parse_json_object(b64decode(payload_b64))
    for name in ("exp", "iat", "iss", "aud", "sub"):
        if claims.get(name) is None:
            raise Rejected(f"the token lacks the required claim `{name}`")
    for name in ("exp", "iat", "nbf"):
        if name in claims and not (claims[name] is None and name == "nbf") and not is_uint(claims[name]):
            raise Rejected("the token is malformed")
    for name in ("iss", "aud", "sub", "scope", "jti"):
        if name in claims and not isinstance(claims[name], str) and not (name == "jti" and claims[name] is None):
            raise Rejected("the token is malformed")
    if claims["sub"] == "":
        raise Rejected("the token lacks the required claim `sub`")
    leeway = min(settings.leeway_seconds, MAX_LEEWAY_SECONDS)
    if now >= claims["exp"] + leeway:
        raise Rejected("the token has expired")
    if claims.get("nbf") is not None and claims["nbf"] > now + leeway:
        raise Rejected("the token is not valid yet")
    if claims["iss"] != settings.issuer:
        raise Rejected("the token's issuer is not accepted")
    if claims["aud"] != settings.audience:
        raise Rejected("the token's audience is not accepted")
    return claims


def check_token(token: str, settings, now: int):
    """The claims and the scopes still held of an active token; raises
    `Rejected` for an inactive one and `Unusable` when storage fails."""
    claims = verify(token, settings, now)
    if claims.get("jti") is None:
        raise Rejected("the token has no `jti`")
    try:
        status = host.find_token_status(claims["jti"], claims["sub"], claims["iat"])
    except Err as e:
        raise Unusable(e.value)
    if status.revoked:
        raise Rejected("the token was revoked")
    if status.user is None:
        raise Rejected("the token's user no longer exists")
    scopes = [s for s in claims.get("scope", "").split() if s in status.user.scopes]
    return claims, scopes


def bearer(authorization):
    """`None` without Bearer credentials, `""` for malformed ones, else the token."""
    if authorization is None:
        return None
    value = authorization.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.lstrip(" ")
    if token == "" or any(c.isspace() for c in token):
        return ""
    return token


def check_asked_scopes(asked):
    if asked is None:
        return
    if not asked:
        raise Err(TokenError_InvalidScope("the scope parameter is empty"))
    for scope in asked:
        if not SCOPE_TOKEN.fullmatch(scope):
            raise Err(TokenError_InvalidScope(f"malformed scope `{scope}`"))


def dedup(scopes):
    """Drops repeats that follow each other, as the Rust policy does."""
    return [s for i, s in enumerate(scopes) if i == 0 or scopes[i - 1] != s]


def narrowed(asked, held, refusal: str):
    """All of `held` when nothing was asked, else `asked` (repeats dropped)
    if `held` has all of it; `refusal` names the first scope it lacks."""
    if asked is None:
        return list(held)
    beyond = [s for s in asked if s not in held]
    if beyond:
        raise Err(TokenError_InvalidScope(refusal.format(beyond[0])))
    return dedup(asked)


def signing_settings():
    settings = host.settings()
    if not settings.signing_keys:
        raise Err(TokenError_Unavailable("no signing key is configured"))
    return settings


def find_user(username):
    try:
        return host.find_user(username)
    except Err as e:
        raise Err(TokenError_Unavailable(e.value))


def mint(settings, subject: str, scopes, now: int) -> TokenGrant:
    try:
        key = usable_keys(settings.signing_keys)[0]
    except Unusable as e:
        raise Err(TokenError_Unavailable(str(e)))
    token_id = secrets.token_hex(16)
    expires_at = now + settings.token_ttl_seconds
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "exp": expires_at,
        "iat": now,
        "nbf": now,
        "jti": token_id,
        "scope": " ".join(scopes),
    }
    return TokenGrant(
        access_token=sign(key, claims),
        token_type="bearer",
        expires_in=settings.token_ttl_seconds,
        scopes=scopes,
        token_id=token_id,
        expires_at=expires_at,
    )


class Policy(exports.Policy):
    def info(self) -> PolicyInfo:
        return PolicyInfo(name=NAME, version=VERSION)

    def hash_password(self, password: str) -> str:
        if password == "":
            raise Err("password must not be empty")
        return primitives.argon2id_hash(password)

    def issue_token(self, request) -> TokenGrant:
        if request.username == "" or request.password == "":
            raise Err(TokenError_InvalidRequest("username and password must not be empty"))
        check_asked_scopes(request.scopes)
        settings = signing_settings()
        user = find_user(request.username)
        if user is None:
            primitives.argon2id_verify(request.password, DUMMY_HASH)
            raise Err(TokenError_InvalidGrant())
        if not primitives.argon2id_verify(request.password, user.password_hash):
            raise Err(TokenError_InvalidGrant())
        granted = narrowed(request.scopes, user.scopes, "scope `{}` is not granted to this user")
        return mint(settings, user.username, granted, int(time.time()))

    def refresh_token(self, request) -> TokenGrant:
        if request.username == "":
            raise Err(TokenError_InvalidRequest("the refresh grant names no user"))
        check_asked_scopes(request.scopes)
        settings = signing_settings()
        wanted = narrowed(
            request.scopes,
            request.granted_scopes,
            "scope `{}` was not granted to this refresh token",
        )
        user = find_user(request.username)
        if user is None:
            raise Err(TokenError_InvalidGrant())
        scopes = [s for s in wanted if s in user.scopes]
        return mint(settings, user.username, scopes, int(time.time()))

    def decide_access(self, request) -> Principal:
        token = bearer(request.authorization)
        if token is None:
            raise Err(AccessDenial_NoCredentials())
        if token == "":
            raise Err(AccessDenial_InvalidToken("the token is malformed"))
        try:
            claims, scopes = check_token(token, host.settings(), int(time.time()))
        except Rejected as e:
            raise Err(AccessDenial_InvalidToken(str(e)))
        except Unusable as e:
            raise Err(AccessDenial_Unavailable(str(e)))
        if any(s not in scopes for s in request.required_scopes):
            raise Err(AccessDenial_InsufficientScope(list(request.required_scopes)))
        return Principal(subject=claims["sub"], scopes=scopes)

    def introspect(self, token: str):
        try:
            claims, scopes = check_token(token, host.settings(), int(time.time()))
        except Rejected:
            return None
        except Unusable as e:
            raise Err(str(e))
        return TokenClaims(
            subject=claims["sub"],
            scopes=scopes,
            issuer=claims["iss"],
            audience=claims["aud"],
            expires_at=claims["exp"],
            issued_at=claims["iat"],
            not_before=claims.get("nbf"),
            token_id=claims["jti"],
        )
