"""Keep secrets out of everything dialbgm writes (manifest, cache entries, rendered output).

API keys come from environment variables and are never put in a config; but a user can still
pass one through ``params`` (e.g. an Authorization header in ``extra_headers``) or a base URL
with credentials or a key in its query (Gemini's ``?key=``). What is *sent* keeps them; what is
*recorded* shows ``<redacted>`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEY = re.compile(
    r"^(authorization|proxy-authorization|cookie|password|secret|token|credentials?|x-api-key|api[-_]?key"
    r"|.*[-_](secret|token|password|api[-_]?key))$",
    re.IGNORECASE,
)
# Query parameters that carry a credential: Gemini's ``key``, signed URLs' ``sig``/``signature``,
# and every name that is secret as a key (api_key, token, access_token, ...).
_SECRET_PARAM = re.compile(r"^(key|apikey|sig|signature|auth|code)$", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"(?P<name>[^&=;#\s]+)=(?P<value>[^&;#\s]*)")
# In free text (an error message): user:password@ in a URL, and name=value in a URL's query.
_TEXT_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_TEXT_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<name>[A-Za-z0-9_.-]+)=(?P<value>[^&;#\s'\"<>)]+)")
REDACTED = "<redacted>"


def _secret_param(name: str) -> bool:
    return bool(_SECRET_KEY.match(name) or _SECRET_PARAM.match(name))


def _redact_query(query: str) -> str:
    return _QUERY_PAIR.sub(
        lambda m: f"{m['name']}={REDACTED}" if _secret_param(m["name"]) and m["value"] else m[0],
        query,
    )


def redact_url(url: str | None) -> str | None:
    if not url or ("@" not in url and "=" not in url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        netloc = f"{REDACTED}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_query(parts.query), parts.fragment))


def redact_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` (an error message, say) with URL credentials, secret query parameters and the
    given ``secrets`` replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _TEXT_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _TEXT_QUERY_PAIR.sub(
        lambda m: f"{m['sep']}{m['name']}={REDACTED}" if _secret_param(m["name"]) else m[0],
        text,
    )


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with values under secret-looking keys, and URL credentials, replaced."""
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            # A --set override names a dotted path (``params.api_key``): its last part is the key.
            last = k.rsplit(".", 1)[-1] if isinstance(k, str) else k
            if isinstance(last, str) and _SECRET_KEY.match(last):
                out[k] = REDACTED
            elif isinstance(last, str) and last.endswith(("api_base", "base_url", "url")) and isinstance(v, str | None):
                out[k] = redact_url(v)
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return obj
