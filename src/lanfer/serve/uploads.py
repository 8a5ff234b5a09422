"""Multipart uploads read into memory, with a byte limit enforced while they arrive.

Starlette's form parser spools every file over 1 MB to a temporary file on disk; the server promises to write
nothing to disk, so uploads are parsed here with python-multipart's streaming parser (the one Starlette uses)
into memory, and a body over the limit is refused (413) as soon as it passes it: nothing more is parsed or kept.

The rest of a refused body is still read and thrown away, up to a bound, before the answer goes out (a
lingering close). A server that answers and closes while request bytes are still arriving makes the kernel
reset the connection, and a client that sends its whole body before it reads (Python's urllib, many small
HTTP libraries) then sees ``Connection reset by peer`` instead of the 413 and its message. A client that asked
``Expect: 100-continue`` (curl, for bodies over 1 MB) has sent no body yet when the Content-Length is refused:
nothing is read then, and it never sends the body at all. A body larger than the bound is cut off as before.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator

from .limits import ApiError

_SMALLER = "send fewer or smaller pictures (or start lanfer serve with a larger --max-upload-mb)"


@dataclass
class Upload:
    """One uploaded file: the form field, the file name the client gave, its bytes."""

    field: str
    filename: str
    data: bytearray = field(default_factory=bytearray)


async def discard(stream: AsyncIterator[bytes], limit: int) -> bool:
    """Read and drop what is left of a request body, at most ``limit`` bytes of it (the lingering close).

    Returns True when the body ended (or the client hung up) within ``limit``, False when reading stopped at
    the bound with more to come: the server's answer then goes out on a connection that will be reset."""
    from starlette.requests import ClientDisconnect

    if limit <= 0:
        return False
    dropped = 0
    try:
        async for chunk in stream:
            dropped += len(chunk)
            if dropped > limit:
                return False
    except ClientDisconnect:  # the client gave up: nobody is waiting for the answer
        pass
    return True


async def read_uploads(content_type: str | None, content_length: str | None, stream: AsyncIterator[bytes],
                       max_bytes: int, max_files: int, *, discard_bytes: int = 0,
                       expect_continue: bool = False) -> list[Upload]:
    """The files of a ``multipart/form-data`` body (form fields without a file name are ignored).

    Raises :class:`ApiError`: 413 for a body over ``max_bytes`` (by its Content-Length, or counted as it
    streams), 422 for a body that is not multipart or holds no file, or more than ``max_files`` files.
    Before a 413, or a 422 for a body that is not multipart, up to ``discard_bytes`` more of the body are read
    and dropped (see the module's doc), unless the Content-Length already says there are more, or the client
    waits for ``100 Continue`` (``expect_continue``) and has sent nothing.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    declared = int(content_length) if content_length and content_length.isascii() and content_length.isdigit() \
        else None
    kind, params = parse_options_header(content_type or "")
    refusal = None
    if kind != b"multipart/form-data" or b"boundary" not in params:
        refusal = ApiError(422, "send the pictures as multipart/form-data file fields named 'files' "
                                "(curl -F files=@photo.jpg ...)")
    elif declared is not None and declared > max_bytes:
        refusal = ApiError(413, f"upload of {declared} bytes is over this server's limit of {max_bytes} bytes; "
                                f"{_SMALLER}")
    if refusal is not None:
        if not expect_continue and (declared is None or declared <= discard_bytes):
            await discard(stream, discard_bytes)
        raise refusal
    files: list[Upload] = []
    part: dict = {}

    def on_part_begin():
        part.clear()
        part.update(headers={}, name=b"", value=b"", upload=None)

    def on_header_field(data, start, end):
        part["name"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["name"].lower()] = part["value"]
        part["name"] = part["value"] = b""

    def on_headers_finished():
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" in options:
            if len(files) >= max_files:
                raise ApiError(422, f"more than {max_files} files in one request; send at most {max_files}")
            upload = Upload(options.get(b"name", b"").decode("utf-8", "replace"),
                            options[b"filename"].decode("utf-8", "replace") or f"upload:{len(files)}")
            files.append(upload)
            part["upload"] = upload

    def on_part_data(data, start, end):
        if part.get("upload") is not None:
            part["upload"].data += data[start:end]

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data})
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > max_bytes:
                await discard(stream, discard_bytes)  # the rest of the body, so that the client reads the 413
                raise ApiError(413, f"upload is over this server's limit of {max_bytes} bytes; {_SMALLER}")
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as e:  # python-multipart's MultipartParseError and friends: a malformed body
        raise ApiError(422, f"malformed multipart body ({e})") from None
    if not files:
        raise ApiError(422, "the request holds no file; send pictures as multipart file fields named 'files'")
    return files
