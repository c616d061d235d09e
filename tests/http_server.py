"""A real HTTP server on 127.0.0.1 for the download tests, with settable misbehaviour."""

from __future__ import annotations

import http.server
import re
import threading


class Server:
    """A real HTTP/1.0 server on 127.0.0.1 (an ephemeral port) whose misbehaviour the test sets."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict]] = []
        self.drop_first: set[str] = set()  # first GET of these paths sends half the body, then closes
        self.statuses: dict[str, list[int]] = {}  # paths answered with these error statuses first
        self.range_support = True
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                state.requests.append((self.path, dict(self.headers)))
                if state.statuses.get(self.path):
                    self.send_error(state.statuses[self.path].pop(0))
                    return
                body = state.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and state.range_support:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.path in state.drop_first:
                    state.drop_first.discard(self.path)
                    self.wfile.write(payload[: len(payload) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def ranges(self, path: str) -> list[str | None]:
        return [headers.get("Range") for p, headers in self.requests if p == path]

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
