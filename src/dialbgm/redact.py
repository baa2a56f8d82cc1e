"""Keep secrets out of everything dialbgm writes (manifest, cache entries, rendered output).

API keys come from environment variables and are never put in a config; but a user can still
pass one through ``params`` (e.g. an Authorization header in ``extra_headers``) or a base URL
with credentials. What is *sent* keeps them; what is *recorded* shows ``<redacted>`` instead.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEY = re.compile(
    r"^(authorization|proxy-authorization|cookie|password|secret|token|credentials?|x-api-key|api[-_]?key"
    r"|.*[-_](secret|token|password|api[-_]?key))$",
    re.IGNORECASE,
)
REDACTED = "<redacted>"


def redact_url(url: str | None) -> str | None:
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{REDACTED}@{host}", parts.path, parts.query, parts.fragment))


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with values under secret-looking keys, and URL credentials, replaced."""
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_KEY.match(k):
                out[k] = REDACTED
            elif isinstance(k, str) and k.endswith(("api_base", "base_url", "url")) and isinstance(v, str | None):
                out[k] = redact_url(v)
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return obj
