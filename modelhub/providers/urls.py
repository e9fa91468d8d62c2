"""Where a provider is reached, and the guard on base URLs typed into admin (SSRF)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from .transport import PrivateAddressRefused, host_check, host_is_trusted

# The SDKs' own base-URL variables, which apply to a provider whose base_url is blank.
SDK_BASE_URL_ENV = {
    "anthropic": "ANTHROPIC_BASE_URL",
    "openai": "OPENAI_BASE_URL",
    "google": "GOOGLE_GEMINI_BASE_URL",
}


def base_url_env_name(*, name: str, kind: str) -> str | None:
    """The environment variable that can point a provider elsewhere: the SDK's own for the
    three first-party kinds, ``<NAME>_BASE_URL`` (e.g. GROQ_BASE_URL) for compatible ones."""
    if kind == "openai_compatible":
        return f"{name.upper().replace('-', '_')}_BASE_URL"
    return SDK_BASE_URL_ENV.get(kind)


def base_url_resolve(*, name: str, kind: str, base_url: str) -> str | None:
    """The URL the SDK is given; None means the SDK's built-in default. For compatible
    providers the variable wins, so the simulator (or a local mirror) can stand in."""
    env_name = base_url_env_name(name=name, kind=kind)
    from_env = os.environ.get(env_name, "") if env_name else ""
    if kind == "openai_compatible":
        return from_env or base_url or None
    return base_url or from_env or None


def base_url_validate(*, url: str) -> None:
    """Refuse URLs that would let an admin user point the server at internal services.
    Every address the host resolves to must be public, unless the host is allowlisted.
    Numeric spellings of loopback (127.1, 2130706433, 0x7f000001) resolve to 127.0.0.1
    and so are refused like it. The lookup goes through the guarded resolver, which every
    outbound connection runs again on its own lookup: a later answer is checked too."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:  # a bad port or IPv6 bracket
        raise ValidationError(f"Base URL is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Base URL must be an http(s) URL with a host.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("Base URL must not contain credentials ('user@host').")
    if host_is_trusted(parts.hostname):
        return
    if parts.scheme != "https":
        raise ValidationError("Base URL must use https (or name an allowlisted host).")
    try:
        host_check(host=parts.hostname, port=port)
    except PrivateAddressRefused as exc:
        raise ValidationError(
            "Base URL resolves to a private, loopback or reserved address; add the host to "
            "MODELHUB_BASE_URL_ALLOWLIST if it is a self-hosted endpoint."
        ) from exc
    except (OSError, UnicodeError) as exc:
        raise ValidationError(f"Base URL host does not resolve: {parts.hostname}") from exc
