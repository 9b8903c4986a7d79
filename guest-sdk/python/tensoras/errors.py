"""The one exception type the SDK raises, with a subclass per reason.

Platform calls return their errors as data (WIT variants); the SDK turns each into an
exception a function can catch, or let through: a tool or chat function that lets one
through fails its invocation, and a refusal (a call the manifest does not grant) is
answered 403 to the client, as for Rust functions.
"""


class Error(Exception):
    """A platform call failed; `kind` says why (`not_permitted`, `limit_exceeded`, ...)."""

    kind = "failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotPermitted(Error):
    """The manifest does not grant this model, knowledge base, the files or the key-value store."""

    kind = "not_permitted"


class InvalidRequest(Error):
    """The request itself is invalid (unknown field value, malformed filter, ...)."""

    kind = "invalid_request"


class NotFound(Error):
    """No such model, knowledge base or file for this tenant."""

    kind = "not_found"


class LimitExceeded(Error):
    """The invocation used up its model calls or generated tokens (manifest `limits`)."""

    kind = "limit_exceeded"


class Overloaded(Error):
    """The server is at capacity; try again later."""

    kind = "overloaded"


class TooLarge(Error):
    """A key-value key or value over the store's limits."""

    kind = "too_large"


class Failed(Error):
    """The call ran and failed."""

    kind = "failed"


class InvalidArguments(Error, ValueError):
    """Raise from a tool when its arguments are wrong: the model is told so."""

    kind = "invalid_arguments"


_BY_CASE = {
    "NotPermitted": NotPermitted,
    "InvalidRequest": InvalidRequest,
    "Invalid": InvalidRequest,
    "NotFound": NotFound,
    "LimitExceeded": LimitExceeded,
    "Overloaded": Overloaded,
    "TooLarge": TooLarge,
    "Failed": Failed,
    "Backend": Failed,
}

_PREFIX = {
    NotPermitted: "not permitted",
    InvalidRequest: "invalid request",
    NotFound: "not found",
    LimitExceeded: "limit exceeded",
    Overloaded: "overloaded",
    TooLarge: "too large",
    Failed: "failed",
}


def from_wit(err) -> Error:
    """Maps a WIT error variant (`AiError_NotPermitted(value=...)`, ...) to an `Error`.

    The generated classes are named `<Variant>_<Case>`; the case picks the subclass. The
    text reads as the Rust SDK's does, so logs look the same whatever the language.
    """
    variant, _, case = type(err).__name__.partition("_")
    cls = _BY_CASE.get(case, Failed)
    value = getattr(err, "value", None)
    if variant == "RetrievalError" and cls is NotPermitted:
        value = f"knowledge base '{value}' is not granted to this function (grants.knowledge_bases)"
    elif variant == "RetrievalError" and cls is NotFound:
        value = f"no knowledge base '{value}'"
    elif variant == "KvError" and cls is NotPermitted:
        value = "the key-value store is not granted to this function (grants.kv)"
    elif variant == "FilesError" and cls is NotPermitted:
        value = "the tenant's files are not granted to this function (grants.files)"
    elif variant == "FilesError" and cls is NotFound:
        value = f"no file '{value}'"
    return cls(f"{_PREFIX[cls]}: {value}")


def call(fn, *args):
    """Calls a generated import, turning its `Err(variant)` into an `Error`."""
    from componentize_py_types import Err

    try:
        return fn(*args)
    except Err as e:
        raise from_wit(e.value) from None
