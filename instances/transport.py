"""Service Ping transport: a request body (or uploaded file) into a JSON value.

Size limit, gzip (streamed, with a hard cap on the decompressed size), UTF-8 BOM and JSON, each
refusal a `PayloadError` carrying the HTTP status to answer with. Pure: no ORM, no settings.
What the JSON says is `instances.parsing`'s business.
"""

from __future__ import annotations

import json
import math
import re
import zlib

import orjson

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
_IDENTITY_ENCODINGS = frozenset({"", "identity"})
# Bounded output per zlib call keeps a bomb's peak memory near max_bytes, not a multiple of it.
_INFLATE_CHUNK = 1024 * 1024
# Python joins valid surrogate pairs while decoding, so any surrogate left in a str is a lone one:
# not encodable as UTF-8, refused by every database driver. NUL: refused by PostgreSQL.
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class PayloadError(ValueError):
    """A request body that cannot be decoded; `status` is the HTTP status to answer with.

    400 malformed gzip/UTF-8/JSON, 413 too large (raw or decompressed), 415 unsupported encoding.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_body(raw: bytes, *, content_encoding: str | None, max_bytes: int) -> object:
    """Decode a request body (or uploaded file) into a JSON value: `loads_json(inflate_body(...))`.

    Gunzips when `content_encoding` is gzip or the bytes start with the gzip magic, streaming with
    a hard cap of `max_bytes` decompressed bytes. Strips a UTF-8 BOM. Integers beyond 64 bits parse
    (as Python ints or floats) rather than fail; `parse_ping` later turns them into None.

    Raises `PayloadError`: 413 when `raw` or its decompressed form exceeds `max_bytes`, 415 for a
    Content-Encoding other than gzip/identity, 400 for broken gzip, invalid UTF-8 or invalid JSON
    (with the decoder's message and position).
    """
    return loads_json(inflate_body(raw, content_encoding=content_encoding, max_bytes=max_bytes))


def inflate_body(
    raw: bytes, *, content_encoding: str | None, max_bytes: int
) -> bytes | bytearray | memoryview:
    """The JSON text of a body: gunzipped if needed (at most `max_bytes`), without a UTF-8 BOM.

    This is what is kept as the raw payload. Raises `PayloadError` (413, 415 or 400) as
    `decode_body` does for transport problems.
    """
    if len(raw) > max_bytes:
        raise PayloadError(413, f"body is {len(raw)} bytes, over the limit of {max_bytes} bytes")
    encoding = (content_encoding or "").strip().lower()
    if encoding in _GZIP_ENCODINGS or raw[:2] == _GZIP_MAGIC:
        data: bytes | bytearray | memoryview = _gunzip(raw, max_bytes=max_bytes)
    elif encoding in _IDENTITY_ENCODINGS:
        data = raw
    else:
        raise PayloadError(
            415, f"unsupported Content-Encoding {content_encoding!r}: send gzip or no encoding"
        )
    if data[:3] == _UTF8_BOM:
        data = memoryview(data)[3:]
    return data


def loads_json(data: bytes | bytearray | memoryview) -> object:
    """Parse JSON text; raises `PayloadError` 400 for invalid UTF-8 or JSON.

    Every string in the result is one a database can store (`clean_text`): JSON may escape NUL
    (``\\u0000``) and, through the standard-library fallback, lone UTF-16 surrogates.
    """
    value, fallback = _loads(data)
    text = data.tobytes() if isinstance(data, memoryview) else data
    if fallback or b"\\u0000" in text:
        value = clean_value(value)
    return value


def clean_text(value: str) -> str:
    """`value` with each NUL and lone UTF-16 surrogate replaced by U+FFFD.

    The one text sanitiser of the ingest boundary: PostgreSQL refuses NUL in text and no driver
    can encode a lone surrogate, so either would otherwise fail the whole write. The
    replacement character keeps the damage visible (and lets the parser refuse an identity
    that holds one) rather than silently joining the text around it.
    """
    return _UNSTORABLE_RE.sub(REPLACEMENT, value)


def clean_value(root: object) -> object:
    """`root` with every string (keys included) passed through `clean_text`, in place.

    Iterative: a JSON document may nest deeper than Python's recursion limit.
    """
    if isinstance(root, str):
        return clean_text(root)
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if any(isinstance(k, str) and clean_text(k) != k for k in node):
                cleaned = {clean_text(k): v for k, v in node.items()}
                node.clear()
                node.update(cleaned)
            for key, item in node.items():
                if isinstance(item, str):
                    node[key] = clean_text(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = clean_text(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
    return root


def _gunzip(raw: bytes, *, max_bytes: int) -> bytearray:
    """Inflate one or more concatenated gzip members, refusing output beyond `max_bytes`."""
    out = bytearray()
    pending = raw
    while pending:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while not inflater.eof:
                room = min(_INFLATE_CHUNK, max_bytes + 1 - len(out))
                chunk = inflater.decompress(pending, room)
                out += chunk
                if len(out) > max_bytes:
                    raise PayloadError(
                        413, f"decompressed body exceeds the limit of {max_bytes} bytes"
                    )
                progressed = chunk or len(inflater.unconsumed_tail) != len(pending)
                pending = inflater.unconsumed_tail
                if not progressed:
                    raise PayloadError(400, "gzip stream is truncated")
        except zlib.error as exc:
            raise PayloadError(400, f"body is not valid gzip: {exc}") from None
        pending = inflater.unused_data
    return out


def _loads(data: bytes | bytearray | memoryview) -> tuple[object, bool]:
    """(the JSON value, whether the standard-library fallback parsed it)."""
    try:
        return orjson.loads(data), False
    except orjson.JSONDecodeError as exc:
        if "utf-8" in exc.msg.lower():
            raise PayloadError(400, _utf8_error(data)) from None
        if "number" not in exc.msg.lower():
            raise PayloadError(400, f"malformed JSON: {exc}") from None
    # orjson refuses (or, by version, rounds) numbers outside 64-bit/double range; the standard
    # library parses them exactly, and the ping parser nulls them later.
    try:
        value = json.loads(
            bytes(data).decode("utf-8"), parse_int=_parse_int, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise PayloadError(400, f"malformed JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise PayloadError(400, f"malformed JSON: {exc}") from None
    return value, True


def _parse_int(text: str) -> int | float:
    # Past Python's digit limit for int() a number cannot be a count; infinity keeps it a number
    # (so the body still parses) that parse_ping turns into None.
    try:
        return int(text)
    except ValueError:
        return -math.inf if text.startswith("-") else math.inf


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _utf8_error(data: bytes | bytearray | memoryview) -> str:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"body is not valid UTF-8: {exc.reason} at byte {exc.start}"
    return "body is not valid UTF-8"
