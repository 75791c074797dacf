"""Reading a body inside the attempt, and closing what a call no longer needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import cast

import anyio
import httpx

from resilient._core._deadline import Deadline


class _RestStream(httpx.SyncByteStream):
    """The bytes read inside the attempt, then the rest of the body as it streams."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], response: httpx.Response) -> None:
        self._head = head
        self._rest = rest
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head, []
        yield from head
        yield from self._rest

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()
        self._response.close()


class _AsyncRestStream(httpx.AsyncByteStream):
    """The async twin of :class:`_RestStream`."""

    def __init__(
        self, head: list[bytes], rest: AsyncIterator[bytes], response: httpx.Response
    ) -> None:
        self._head = head
        self._rest = rest
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await _aclose_iterator(self._rest)
            await self._response.aclose()


def _rebuilt(
    response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=stream,
        request=response.request,
        extensions=dict(response.extensions),
    )


def _read_sync(
    response: httpx.Response, limit: int, deadline: Deadline | None, why: str, authority: str
) -> httpx.Response:
    """``response`` with up to ``limit`` bytes of its body read; fully read and closed
    when the body fits, else streaming the rest after what was read.

    An error while reading closes the response and propagates.

    Raises:
        httpx.ReadTimeout: ``deadline`` passed between two chunks (a body that trickles
            in is never cut off by httpx's per-read timeouts alone); the message starts
            with ``why``, such as ``"the call's deadline passed"``.
    """
    if response.is_stream_consumed:
        return response  # read already (a response built from bytes)
    head: list[bytes] = []
    size = 0
    raw = cast(Generator[bytes, None, None], response.iter_raw())
    try:
        for chunk in raw:
            head.append(chunk)
            size += len(chunk)
            if size > limit:
                return _rebuilt(response, _RestStream(head, raw, response))
            if deadline is not None and deadline.remaining() <= 0:
                raise _out_of_time(response, why, authority)
    except BaseException:
        raw.close()
        response.close()
        raise
    return _rebuilt(response, httpx.ByteStream(b"".join(head)))


def _out_of_time(response: httpx.Response, why: str, authority: str) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(
        f"{why} while reading the body from {authority}",
        request=response.request,
    )


async def _read_async(response: httpx.Response, limit: int) -> httpx.Response:
    """The async twin of :func:`_read_sync`; the caller bounds it by the deadline.

    The body's own iterator is held and closed here (or by the stream handed on), so
    that no async generator is left for the garbage collector to finalise.
    """
    if response.is_stream_consumed:
        return response
    head: list[bytes] = []
    size = 0
    stream = response.stream
    if isinstance(stream, httpx.AsyncByteStream):
        chunks = stream.__aiter__()
    else:
        chunks = response.aiter_raw()  # raises httpx's own error for a sync stream
    try:
        async for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size > limit:
                return _rebuilt(response, _AsyncRestStream(head, chunks, response))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _aclose_iterator(chunks)
            await response.aclose()
        raise
    await _aclose_iterator(chunks)
    await response.aclose()
    return _rebuilt(response, httpx.ByteStream(b"".join(head)))


async def _aclose_iterator(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _close_all(responses: list[httpx.Response], keep: httpx.Response | None) -> None:
    for response in responses:
        if response is not keep and not response.is_closed:
            response.close()
    responses.clear()


async def _aclose_all(responses: list[httpx.Response], keep: httpx.Response | None) -> None:
    if not any(r is not keep and not r.is_closed for r in responses):
        responses.clear()
        return
    # Shielded: a cancelled call still closes what it holds.
    with anyio.CancelScope(shield=True):
        for response in responses:
            if response is not keep and not response.is_closed:
                await response.aclose()
    responses.clear()
