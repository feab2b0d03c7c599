"""Received values fitted to their columns: text clipped to its length, raw payloads compressed.

Pure helpers shared by the ping store, the bulk loaders and the rejection keeper; a ping's raw
JSON is stored zlib-compressed and read back with ``decompress_raw``.
"""

from __future__ import annotations

import zlib

# zlib level 1: a full-size payload shrinks about 4x at a fraction of level 6's cost, and
# compression is the largest per-ping cost of a bulk load.
RAW_COMPRESSION_LEVEL = 1


def clip(value: str | None, length: int) -> str:
    return (value or "")[:length]


def compress_raw(raw: bytes | None) -> bytes | None:
    return zlib.compress(raw, RAW_COMPRESSION_LEVEL) if raw else None


def decompress_raw(blob: bytes | memoryview | None) -> bytes | None:
    return zlib.decompress(bytes(blob)) if blob else None
