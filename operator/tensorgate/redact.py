"""Masking secrets in text that is about to be printed, logged or written to status.

One helper, :func:`redact`, for every place that prints a DSN, a URL or a message that may
hold one: the password of any ``scheme://user:password@host`` becomes ``***`` (a bare
``scheme://token@host`` loses the token), and so do the values of query parameters that
carry credentials (``?password=``, ``&token=``, ``sslpassword=`` ...). The rest of the text
is unchanged, so a message still names the host and the field.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/@:\s'\"]*)(?::(?P<pw>[^/@\s'\"]*))?@"
)
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;\s](?:password|passwd|pwd|pass|sslpassword|token|access_token|"
    r"api_key|apikey|secret|client_secret|sig|signature)=)[^&\s'\"]*",
    re.IGNORECASE,
)


def _userinfo(match: re.Match[str]) -> str:
    user, password = match.group("user"), match.group("pw")
    if password is None:  # scheme://token@host: the user part is the credential
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{user}:{MASK}@"


def redact(text: str) -> str:
    """``text`` with URL passwords, tokens and credential query parameters masked."""
    if "@" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(lambda m: m.group("key") + MASK, _USERINFO.sub(_userinfo, text))
