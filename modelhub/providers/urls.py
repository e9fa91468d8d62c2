"""Where a provider is reached, and the guard on base URLs typed into admin (SSRF)."""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

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


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def base_url_validate(*, url: str) -> None:
    """Refuse URLs that would let an admin user point the server at internal services.
    Every address the host resolves to must be public, unless the host is allowlisted.
    Numeric spellings of loopback (127.1, 2130706433, 0x7f000001) resolve to 127.0.0.1
    and so are refused like it."""
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Base URL must be an http(s) URL with a host.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("Base URL must not contain credentials ('user@host').")
    config = settings.MODELHUB
    if config["ALLOW_PRIVATE_BASE_URLS"] or parts.hostname in config["BASE_URL_ALLOWLIST"]:
        return
    if parts.scheme != "https":
        raise ValidationError("Base URL must use https (or name an allowlisted host).")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValidationError(f"Base URL host does not resolve: {parts.hostname}") from exc
    if not all(_address_is_public(str(info[4][0])) for info in infos):
        raise ValidationError(
            "Base URL resolves to a private, loopback or reserved address; add the host to "
            "MODELHUB_BASE_URL_ALLOWLIST if it is a self-hosted endpoint."
        )
