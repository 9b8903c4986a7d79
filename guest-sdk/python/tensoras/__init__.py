"""Tensoras guest SDK for Python functions (built with componentize-py).

    from tensoras import ai, kb, files, kv, tool, http, Error

`ai` calls models, `kb` retrieves from knowledge bases, `files` reads the tenant's
uploaded files, `kv` is the function's own key-value store; `tool` and `http` turn plain functions into the exports of the
`tool-function` and `http-function` worlds. Every platform call raises an `Error`
subclass when refused or failed (`NotPermitted`, `LimitExceeded`, ...).
"""

from . import ai, files, kb, kv
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
