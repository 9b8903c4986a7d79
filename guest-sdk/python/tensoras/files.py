"""The invoking tenant's files, uploaded at `POST /v1/files` (needs `"files": true` in
the manifest's grants). Read-only; another tenant's file id is `NotFound`.

    from tensoras import files

    info = files.info("file-abc")      # .filename, .purpose, .bytes, .content_type, .created_at
    text = files.read_str("file-abc")
"""

from wit_world.imports import files as _wit

from .errors import call

MAX_READ = 4 << 20
"""The most one `read_at` returns; `read` reads a larger file in pieces of this size."""


def info(file_id: str):
    """The file's metadata (`id`, `filename`, `purpose`, `bytes`, `content_type`, `created_at`)."""
    return call(_wit.info, file_id)


def read_at(file_id: str, offset: int, length: int) -> bytes:
    """Up to `length` bytes from `offset` (at most `MAX_READ`; fewer at the end, none past it)."""
    return bytes(call(_wit.read, file_id, offset, min(length, MAX_READ)))


def read(file_id: str) -> bytes:
    """The whole content. Mind the function's memory limit with large files."""
    pieces, offset = [], 0
    while True:
        piece = read_at(file_id, offset, MAX_READ)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        offset += len(piece)


def read_str(file_id: str) -> str:
    """The whole content as UTF-8 text (undecodable bytes replaced)."""
    return read(file_id).decode("utf-8", errors="replace")


__all__ = ["MAX_READ", "info", "read_at", "read", "read_str"]
