"""Tensoras guest SDK for Python functions (built with componentize-py).

    from tensoras import ai, kb, kv, tool, http, Error

`ai` calls models, `kb` retrieves from knowledge bases, `kv` is the function's own
key-value store; `tool` and `http` turn plain functions into the exports of the
`tool-function` and `http-function` worlds. Every platform call raises an `Error`
subclass when refused or failed (`NotPermitted`, `LimitExceeded`, ...).
"""

from . import ai, kb, kv
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
