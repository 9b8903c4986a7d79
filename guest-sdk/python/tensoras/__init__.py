"""Tensoras guest SDK for Python functions (built with componentize-py).

    from tensoras import ai, kb, files, kv, tool, http, chat, Error

`ai` calls models, `kb` retrieves from knowledge bases, `files` reads the tenant's
uploaded files, `kv` is the function's own key-value store; `tool`, `http` and `chat` turn
plain functions into the exports of the `tool-function`, `http-function` and
`chat-function` worlds. Every platform call raises an `Error` subclass when refused or
failed (`NotPermitted`, `LimitExceeded`, ...).
"""

from . import ai, chat, files, kb, kv
from .errors import (
    Error,
    Failed,
    InvalidArguments,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    NotPermitted,
    Overloaded,
    TooLarge,
)
from .tool import tool

__all__ = [
    "ai",
    "chat",
    "files",
    "kb",
    "kv",
    "tool",
    "Error",
    "Failed",
    "InvalidArguments",
    "InvalidRequest",
    "LimitExceeded",
    "NotFound",
    "NotPermitted",
    "Overloaded",
    "TooLarge",
]
