"""Messages and the cache value: validation, encoding, and SPEC §3's `add`.

A message is a dict `{"id": str, "text": str, "timestamp": int}` (plus an optional
`"username"`). `comment:<id>` holds one message as JSON; `recent:comments` holds a JSON array
of messages sorted by timestamp ascending and trimmed to the cache capacity. `add` is the one
definition of the cache update that every writer (post, heal, sweeper) uses, so the designs
differ only in how they read and write the cache, never in what they compute.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Iterable

__all__ = [
    "CACHE_KEY", "COMMENT_PREFIX", "comment_key", "BadInput", "validate_post", "validate_heal",
    "decode_cache", "encode_cache", "decode_message", "encode_message", "cache_add",
    "cache_add_all", "cache_ids", "ID_PATTERN", "MAX_ID_LENGTH",
]

CACHE_KEY = "recent:comments"
COMMENT_PREFIX = "comment:"
MAX_ID_LENGTH = 64
MAX_USERNAME_LENGTH = 64
# Browser ids of the original are `<Date.now()>-<random>`; letters, digits, '-' and '_' cover them
# and keep ids safe inside a KV key and a URL.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_TIMESTAMP = 2**53 - 1  # the largest integer a JavaScript client can send exactly


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
    if not ID_PATTERN.match(value):
        raise BadInput(f"{field} may only contain letters, digits, '-' and '_'")
    return value


def validate_post(body: Any, *, max_text: int, now_ms: int | None = None) -> dict:
    """The message a POST body describes, or BadInput; `id`/`timestamp` are generated when absent."""
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
    message = {"id": message_id, "text": text, "timestamp": timestamp}
    username = body.get("username")
    if username is not None:
        if not isinstance(username, str) or len(username) > MAX_USERNAME_LENGTH:
            raise BadInput(f"username must be a string of at most {MAX_USERNAME_LENGTH} characters")
        message["username"] = username
    return message


def validate_heal(body: Any) -> tuple[str, str]:
    """The (message id, heal token) of an add-to-cache body, or BadInput."""
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    if "messageId" not in body:
        raise BadInput("missing field: messageId")
    message_id = _check_id(body["messageId"], "messageId")
    token = body.get("healToken")
    if not isinstance(token, str) or not token or len(token) > 128:
        raise BadInput("missing or malformed field: healToken")
    return message_id, token


def _valid_entry(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("id"), str)
            and isinstance(entry.get("timestamp"), int) and not isinstance(entry["timestamp"], bool))


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


def decode_message(raw: str | bytes | None) -> dict | None:
    """The message stored at a `comment:<id>` key, or None if absent or unreadable."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
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
