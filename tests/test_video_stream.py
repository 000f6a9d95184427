"""A real HTTP video stream (served here) that drops: FFmpeg reads it, the source reconnects."""

from __future__ import annotations

import contextlib
import http.server
import threading

import pytest
from video_scenes import Placement, astronaut_face, render, write_video

from swinface.video.source import LiveSource, VideoError


@pytest.fixture
def stream(tmp_path):
    """An HTTP server whose first response breaks off halfway; `state['up']` switches it off."""
    truth = [[Placement(0, 20 + 8 * i, 40)] for i in range(30)]
    data = write_video(tmp_path / "cam.avi", render(truth, [astronaut_face()])).read_bytes()
    state = {"requests": 0, "up": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            state["requests"] += 1
            if not state["up"]:
                self.send_error(503)
                return
            body = data if state["requests"] > 1 else data[: len(data) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))  # the first one will not get it all
            self.end_headers()
            with contextlib.suppress(OSError):  # the reader may hang up first
                self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.avi", state
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_dropped_http_stream_is_reported_and_reopened(stream):
    url, state = stream
    live = LiveSource(url, reconnect=2, reconnect_delay=0.05, realtime=False)
    taken = sum(1 for _ in live.frames())
    stats = live.stats
    assert live.error is None and stats.reconnects == 1 and state["requests"] == 2
    dropped_at = int(stats.problems[0].rsplit(" ", 1)[1])
    assert stats.problems == [
        f"{url}: the stream dropped after frame {dropped_at}",
        f"{url}: reconnected (attempt 1)",
    ]
    assert 0 < dropped_at < 30 and stats.frames_read == dropped_at + 30  # then the whole file
    assert taken == stats.frames_delivered <= stats.frames_read


def test_a_stream_that_stays_down_ends_with_an_error(stream):
    url, state = stream
    live = LiveSource(url, reconnect=2, reconnect_delay=0.05, realtime=False)
    state["up"] = False  # the first connection breaks, and every reconnection is refused
    assert sum(1 for _ in live.frames()) >= 1
    assert live.stats.reconnects == 0 and state["requests"] == 3
    assert live.error == f"{url}: the stream dropped and 2 reconnection attempt(s) failed"


def test_a_source_that_cannot_be_opened_is_named():
    with pytest.raises(VideoError, match="http://127.0.0.1:9/none: cannot open the video source"):
        LiveSource("http://127.0.0.1:9/none")
