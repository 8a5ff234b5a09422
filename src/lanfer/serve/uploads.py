"""Multipart uploads read into memory, with a byte limit enforced while they arrive.

Starlette's form parser spools every file over 1 MB to a temporary file on disk; the server promises to write
nothing to disk, so uploads are parsed here with python-multipart's streaming parser (the one Starlette uses)
into memory, and a body over the limit is refused (413) as soon as it passes it, before the rest is read.
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


async def read_uploads(content_type: str | None, content_length: str | None, stream: AsyncIterator[bytes],
                       max_bytes: int, max_files: int) -> list[Upload]:
    """The files of a ``multipart/form-data`` body (form fields without a file name are ignored).

    Raises :class:`ApiError`: 413 for a body over ``max_bytes`` (by its Content-Length, or counted as it
    streams), 422 for a body that is not multipart or holds no file, or more than ``max_files`` files.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(422, "send the pictures as multipart/form-data file fields named 'files' "
                            "(curl -F files=@photo.jpg ...)")
    if content_length and content_length.isascii() and content_length.isdigit() and int(content_length) > max_bytes:
        raise ApiError(413, f"upload of {int(content_length)} bytes is over this server's limit of {max_bytes} "
                            f"bytes; {_SMALLER}")
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
