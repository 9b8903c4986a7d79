"""The function's own key-value store (needs `"kv": true` in the manifest's grants).

It is private to this function of this tenant, survives restarts, and goes with the
function when it is deleted. Keys are 1..=512 bytes, values up to 1 MiB, 10 000 keys.

    from tensoras import kv

    kv.set("count", str(int(kv.get_str("count") or 0) + 1))
"""

from wit_world.imports import kv as _wit

from .errors import call


def get(key: str):
    """The value of `key` (bytes), or None."""
    return call(_wit.get, key)


def get_str(key: str):
    """The value of `key` as UTF-8 text, or None."""
    value = get(key)
    return None if value is None else value.decode("utf-8")


def set(key: str, value) -> None:
    """Sets `key` to `value` (bytes, or text stored as UTF-8)."""
    call(_wit.set, key, value.encode("utf-8") if isinstance(value, str) else bytes(value))


def delete(key: str) -> bool:
    """Removes `key`; whether it was set."""
    return call(_wit.delete, key)


def keys(prefix: str = "") -> list:
    """The keys that start with `prefix`, sorted."""
    return call(_wit.keys, prefix)


__all__ = ["get", "get_str", "set", "delete", "keys"]
