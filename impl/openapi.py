"""The worker's OpenAPI 3.1 description, served at `/openapi.json`.

Hand-written (the worker validates by hand, so no framework can derive it) and checked against
the running worker by `tests/impl/test_openapi_fuzz.py`, which builds its Hypothesis strategies
from this schema: every documented status is the only one an endpoint gives, and requests the
schema calls invalid are refused with 4xx and write nothing.
"""

from __future__ import annotations

from typing import Any

from .config import WorkerConfig
from .messages import MAX_ID_LENGTH, MAX_TIMESTAMP, MAX_USERNAME_LENGTH, MESSAGE_TYPES

#: a message's statuses and the pending scan's largest limit (kvheal.impl.queue_api uses these)
STATUSES = ("pending", "processing", "complete", "failed")
MAX_SCAN_LIMIT = 100

__all__ = ["openapi_schema", "ID_REGEX", "TOKEN_REGEX"]

ID_REGEX = "^[A-Za-z0-9_-]+$"
TOKEN_REGEX = "^[0-9a-f]{48}$"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_schema(config: WorkerConfig | None = None) -> dict[str, Any]:
    """The OpenAPI document of a worker with `config` (its limits appear in the schemas)."""
    config = config or WorkerConfig()
    message_id = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": ID_REGEX}
    timestamp = {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_TIMESTAMP,
        "description": "milliseconds since 1970"
        + (
            f"; at most {config.max_future_ms} ms ahead of the server's clock"
            if config.max_future_ms is not None
            else ""
        ),
    }
    comment = {
        "type": "object",
        "required": ["id", "text", "timestamp"],
        "properties": {
            "id": message_id,
            "text": {"type": "string"},
            "timestamp": timestamp,
            "username": {"type": "string", "maxLength": MAX_USERNAME_LENGTH},
            "type": {"enum": list(MESSAGE_TYPES), "description": "the message's channel (human when absent)"},
            "status": {
                "enum": list(STATUSES),
                "description": "the copy of the message's status (bot work only)",
            },
        },
    }
    common = {
        "400": _error("malformed body or parameter (the reason is in `error`)"),
        "408": _error(f"the body did not arrive within {config.body_timeout:g} s"),
        "413": _error(f"body larger than {config.max_body} bytes"),
        "415": _error("the body is not declared as JSON"),
        "429": _error("too many requests from this address (see Retry-After)"),
        "503": _error("the store is unavailable"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kvheal worker",
            "version": "1",
            "description": "SPEC §8's chat cache API: post, poll, heal. Refused requests (4xx) write nothing.",
        },
        "paths": {
            "/api/comments": {
                "get": {
                    "summary": "The cached messages, newest first",
                    "parameters": [
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP},
                            "description": "only messages with a larger timestamp",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TIMESTAMP},
                            "description": f"at most this many (default {config.default_limit}, "
                            f"capped at {config.max_limit})",
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP},
                            "description": "skip this many of the newest (paging through a large cache)",
                        },
                        {
                            "name": "type",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": list(MESSAGE_TYPES)},
                            "description": "only messages of this channel (a message without a type is human)",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "a page of the cache",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["comments", "total"],
                                        "properties": {
                                            "comments": {"type": "array", "items": comment},
                                            "total": {"type": "integer", "minimum": 0},
                                        },
                                    }
                                }
                            },
                        },
                        "400": common["400"],
                        "503": common["503"],
                    },
                },
                "post": {
                    "summary": "Post a message (stored, then added to the cache)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["text"],
                                    "properties": {
                                        "text": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": config.max_text,
                                            "pattern": r"\S",
                                        },
                                        "id": message_id,
                                        "timestamp": timestamp,
                                        "username": {"type": "string", "maxLength": MAX_USERNAME_LENGTH},
                                        "type": {"enum": list(MESSAGE_TYPES)},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "stored (an idempotent retry of the same message "
                            "answers the original acknowledgement with `repeat`)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["success", "comment", "healToken", "cached"],
                                        "properties": {
                                            "success": {"const": True},
                                            "comment": comment,
                                            "healToken": {"type": "string", "pattern": TOKEN_REGEX},
                                            "cached": {"type": "boolean"},
                                            "repeat": {"type": "boolean"},
                                        },
                                    }
                                }
                            },
                        },
                        "409": _error("a different message with this id exists"),
                        **{k: common[k] for k in ("400", "408", "413", "415", "429", "503")},
                    },
                },
            },
            "/api/admin/add-to-cache": {
                "post": {
                    "summary": "Heal: add a stored message to the cache (needs its heal token)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["messageId", "healToken"],
                                    "properties": {
                                        "messageId": message_id,
                                        "healToken": {"type": "string", "pattern": TOKEN_REGEX},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "what the heal did",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["success", "added", "result"],
                                        "properties": {
                                            "success": {"const": True},
                                            "added": {"type": "boolean"},
                                            "result": {
                                                "enum": [
                                                    "added",
                                                    "already present",
                                                    "outside the cache's window",
                                                ]
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        "403": _error("the heal token does not match this message"),
                        "404": _error("no such message"),
                        **{k: common[k] for k in ("400", "408", "413", "415", "429", "503")},
                    },
                },
            },
            **_queue_paths(config, message_id, comment, common),
            "/api/health": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": {
                            "description": "the worker answers",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bot": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the bot token: 48 hex digits of an HMAC under the worker's secret "
                    "(kvheal.impl.queue_api.bot_token)",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            },
        },
    }


def _json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "required": required, "properties": properties}}
        },
    }


def _ok(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": list(properties), "properties": properties}
            }
        },
    }


def _queue_paths(config: WorkerConfig, message_id: dict, comment: dict, common: dict) -> dict[str, Any]:
    """The status and queue endpoints (kvheal.impl.queue_api)."""
    bot = [{"bot": []}]
    auth = {
        "401": _error("no bot token (Authorization: Bearer <token>)"),
        "403": _error("a wrong bot token"),
    }
    body = {k: common[k] for k in ("400", "408", "413", "415")}
    no_cas = {"501": _error("the backend has no compare-and-swap, which this design needs here")}
    unavailable = {"503": common["503"]}
    status = {"enum": list(STATUSES)}
    name = {**message_id, "description": "letters, digits, '-' and '_'"}
    return {
        "/api/comments/{id}": {
            "patch": {
                "summary": "Set a message's status (its key, then every cache copy, atomically)",
                "description": "The bot (its token) sets any status; the poster, with the message's "
                "heal token and no bot token, may set pending once.",
                "security": [{"bot": []}, {}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": message_id}],
                "requestBody": _json_body(
                    {"status": status, "healToken": {"type": "string", "pattern": TOKEN_REGEX}}, ["status"]
                ),
                "responses": {
                    "200": _ok(
                        "the status is set",
                        {
                            "success": {"const": True},
                            "id": message_id,
                            "status": status,
                            "patched": {"type": "boolean"},
                        },
                    ),
                    **auth,
                    "404": _error("no such message"),
                    "409": _error("the message already has a status (the poster may set one only once)"),
                    "429": common["429"],
                    **body,
                    **no_cas,
                    **unavailable,
                },
            }
        },
        "/api/queue/pending": {
            "get": {
                "summary": "The pending scan: the messages waiting for the bot, oldest first",
                "description": "Reads the cache and the status key of each non-final message, then "
                "brings the cache copies up to date (with bot_scan: writes back the array it read).",
                "security": bot,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SCAN_LIMIT},
                        "description": "at most this many (default 10)",
                    }
                ],
                "responses": {
                    "200": _ok(
                        "the pending messages",
                        {"pending": {"type": "array", "items": comment}, "written": {"type": "boolean"}},
                    ),
                    "400": common["400"],
                    **auth,
                    **no_cas,
                    **unavailable,
                },
            }
        },
        "/api/queue/claim": {
            "post": {
                "summary": "Claim a pending message for a bot (pending -> processing)",
                "security": bot,
                "requestBody": _json_body({"messageId": message_id, "bot": name}, ["messageId"]),
                "responses": {
                    "200": _ok(
                        "claimed", {"success": {"const": True}, "claimed": {"const": True}, "id": message_id}
                    ),
                    **auth,
                    "404": _error("the message is not queued (it has no status)"),
                    "409": _error("the message is not pending"),
                    **body,
                    **no_cas,
                    **unavailable,
                },
            }
        },
        "/api/queue/complete": {
            "post": {
                "summary": "Mark a claimed message complete (its key, then every cache copy)",
                "security": bot,
                "requestBody": _json_body(
                    {"messageId": message_id, "bot": name, "replyId": message_id}, ["messageId"]
                ),
                "responses": {
                    "200": _ok(
                        "completed",
                        {
                            "success": {"const": True},
                            "id": message_id,
                            "status": {"const": "complete"},
                            "patched": {"type": "boolean"},
                        },
                    ),
                    **auth,
                    "404": _error("the message is not queued (it has no status)"),
                    "409": _error("the message is not claimed"),
                    **body,
                    **no_cas,
                    **unavailable,
                },
            }
        },
    }
