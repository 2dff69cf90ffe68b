"""Messages and the cache value: validation, encoding, and SPEC §3's `add`.

A message is a dict `{"id": str, "text": str, "timestamp": int}` (plus an optional
`"username"`, and an optional `"type"`, "human" or "ai": the channel it belongs to, human when
absent, SPEC §6 ai_channel). `comment:<id>` holds one message as JSON; `recent:comments` holds a JSON array
of messages sorted by timestamp ascending and trimmed to the cache capacity. `add` is the one
definition of the cache update that every writer (post, heal, sweeper) uses, so the designs
differ only in how they read and write the cache, never in what they compute.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CACHE_KEY",
    "COMMENT_PREFIX",
    "comment_key",
    "BadInput",
    "validate_post",
    "validate_heal",
    "decode_cache",
    "encode_cache",
    "decode_message",
    "encode_message",
    "cache_add",
    "cache_add_all",
    "cache_ids",
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "check_json_depth",
    "body_digest",
    "same_message",
    "TOKEN_PATTERN",
    "MESSAGE_TYPES",
    "message_type",
]

CACHE_KEY = "recent:comments"
COMMENT_PREFIX = "comment:"
MAX_ID_LENGTH = 64
MAX_USERNAME_LENGTH = 64
# Browser ids of the original are `<Date.now()>-<random>`; letters, digits, '-' and '_' cover them
# and keep ids safe inside a KV key and a URL. Always `fullmatch` (`$` would let a trailing
# newline through).
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
#: heal tokens are lowercase hex (see `Worker.heal_token`)
TOKEN_PATTERN = re.compile(r"[0-9a-f]{1,128}")
MAX_TIMESTAMP = 2**53 - 1  # the largest integer a JavaScript client can send exactly
#: a message's type, the channel a page shows (SPEC §6 ai_channel); absent means human
MESSAGE_TYPES = ("human", "ai")


class BadInput(ValueError):
    """A request body the worker refuses; the message is the reason returned to the client."""


def comment_key(message_id: str) -> str:
    """The KV key that holds message `message_id`."""
    return COMMENT_PREFIX + message_id


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{field} must be a string")
    if not value:
        raise BadInput(f"{field} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise BadInput(f"{field} longer than {MAX_ID_LENGTH} characters")
    if not ID_PATTERN.fullmatch(value):
        raise BadInput(f"{field} may only contain letters, digits, '-' and '_'")
    return value


def _check_unicode(value: str, field: str) -> None:
    # A lone surrogate (a JSON escape such as \ud800 with no pair) parses into a str that no UTF-8 encoder accepts: the
    # store, the cache and every reader would choke on it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{field} is not valid Unicode (a lone surrogate)") from None


def validate_post(
    body: Any, *, max_text: int, now_ms: int | None = None, max_future_ms: int | None = None
) -> dict:
    """The message a POST body describes, or BadInput; `id`/`timestamp` are generated when absent.

    With `max_future_ms`, a timestamp more than that far ahead of the server's clock is refused
    (a far-future timestamp would sort after every honest message and push them out of the cache).
    """
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    if "text" not in body:
        raise BadInput("missing field: text")
    text = body["text"]
    if not isinstance(text, str):
        raise BadInput("text must be a string")
    if not text.strip():
        raise BadInput("text must not be empty")
    if len(text) > max_text:
        raise BadInput(f"text longer than {max_text} characters")
    _check_unicode(text, "text")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if body.get("id") is None:
        message_id = f"{now}-{secrets.token_hex(4)}"
    else:
        message_id = _check_id(body["id"], "id")
    timestamp = body.get("timestamp")
    if timestamp is None:
        timestamp = now
    elif isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise BadInput("timestamp must be an integer (milliseconds)")
    elif not 0 <= timestamp <= MAX_TIMESTAMP:
        raise BadInput("timestamp out of range")
    elif max_future_ms is not None and timestamp > now + max_future_ms:
        raise BadInput(f"timestamp more than {max_future_ms} ms ahead of the server's clock")
    message = {"id": message_id, "text": text, "timestamp": timestamp}
    username = body.get("username")
    if username is not None:
        if not isinstance(username, str) or len(username) > MAX_USERNAME_LENGTH:
            raise BadInput(f"username must be a string of at most {MAX_USERNAME_LENGTH} characters")
        _check_unicode(username, "username")
        message["username"] = username
    kind = body.get("type")
    if kind is not None:
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
            raise BadInput(f"type must be one of {', '.join(MESSAGE_TYPES)}")
        message["type"] = kind
    return message


def message_type(message: dict) -> str:
    """The channel `message` belongs to: its type, human when it has none."""
    kind = message.get("type")
    return kind if kind in MESSAGE_TYPES else "human"


def validate_heal(body: Any) -> tuple[str, str]:
    """The (message id, heal token) of an add-to-cache body, or BadInput."""
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    if "messageId" not in body:
        raise BadInput("missing field: messageId")
    message_id = _check_id(body["messageId"], "messageId")
    token = body.get("healToken")
    if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
        raise BadInput("missing or malformed field: healToken")
    return message_id, token


def same_message(stored: dict, message: dict, *, timestamp_given: bool) -> bool:
    """Whether a POST of `message` repeats the stored message (an idempotent retry): same id,
    text and username, and the same timestamp unless the retry let the server choose it."""
    return (
        stored.get("id") == message["id"]
        and stored.get("text") == message["text"]
        and stored.get("username") == message.get("username")
        and stored.get("type") == message.get("type")
        and (not timestamp_given or stored.get("timestamp") == message["timestamp"])
    )


def body_digest(message: dict) -> str:
    """16 hex digits of SHA-256 over the message's canonical JSON (what a heal token is bound to)."""
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_json_depth(body: bytes, max_depth: int) -> None:
    """BadInput if the JSON text nests arrays/objects deeper than `max_depth` (checked before
    parsing, so a deeply nested body never reaches the recursive parser)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                raise BadInput(f"JSON nested deeper than {max_depth} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and isinstance(entry.get("timestamp"), int)
        and not isinstance(entry["timestamp"], bool)
    )


def decode_cache(raw: str | bytes | None) -> list[dict]:
    """The messages of a cache value; a missing or unparsable value is the empty cache (as the original)."""
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(value, list):
        return []
    return [entry for entry in value if _valid_entry(entry)]


def encode_cache(entries: list[dict]) -> str:
    """The JSON text stored at `recent:comments`."""
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=False)


def json_or_none(raw: str | bytes | None) -> Any:
    """The JSON value of a stored text, or None if absent or unreadable."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def decode_message(raw: str | bytes | None) -> dict | None:
    """The message stored at a `comment:<id>` key, or None if absent or unreadable."""
    value = json_or_none(raw)
    return value if _valid_entry(value) else None


def encode_message(message: dict) -> str:
    """The JSON text stored at `comment:<id>`."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def cache_add(entries: list[dict], message: dict, cap: int) -> list[dict]:
    """SPEC §3 `add`: append, stable sort by timestamp ascending, keep the last `cap` entries."""
    return cache_add_all(entries, [message], cap)


def cache_add_all(entries: list[dict], messages: Iterable[dict], cap: int) -> list[dict]:
    """Append several messages at once, then sort (stable) and trim as `cache_add` does."""
    merged = list(entries)
    merged.extend(messages)
    merged.sort(key=lambda entry: entry["timestamp"])
    return merged[-cap:] if cap > 0 else []


def cache_ids(entries: list[dict]) -> list[str]:
    """The ids of a cache's entries in cache order (repeats kept)."""
    return [entry["id"] for entry in entries]
