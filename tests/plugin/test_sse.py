"""The SSE parser: events split anywhere across chunks, CRLF, comments, multi-line data."""

from eodispatch.core.sse import SseParser


def test_parser_handles_split_chunks_comments_and_crlf():
    stream = (
        b": keep-alive\n\n"
        b"event: hello\ndata: {\"version\": \"0.1.0\"}\n\n"
        b"event: job\r\nid: 7\r\ndata: {\"id\": 1,\r\ndata:  \"status\": \"queued\"}\r\n\r\n"
        + "event: job\ndata: {\"id\": 2, \"title\": \"caf\u00e9\"}\n\n".encode()
    )
    for size in (1, 2, 3, 7, len(stream)):
        p = SseParser()
        events = []
        for i in range(0, len(stream), size):
            events.extend(p.feed(stream[i : i + size]))
        assert [e.event for e in events] == ["hello", "job", "job"], size
        assert events[1].json() == {"id": 1, "status": "queued"}
        assert events[1].id == "7" and p.last_id == "7"
        assert events[2].json()["title"] == "caf\u00e9"
