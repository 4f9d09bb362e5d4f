"""A real HTTP file server on 127.0.0.1 for download tests: byte ranges (206 / 416), Content-Disposition names,
a switch to ignore ranges, a switch to cut the body short, and a log of the requests it answered."""

from __future__ import annotations

import dataclasses
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class ServedFile:
    data: bytes
    disposition_name: str | None = None
    ignore_range: bool = False
    truncate_at: int | None = None  # send only this many bytes, then close (a dropped connection)


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, ServedFile] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                byte_range = self.headers.get("Range")
                server.requests.append((path, byte_range))
                served = server.files.get(path)
                if served is None:
                    self.send_error(404, "Not Found")
                    return
                data, start = served.data, 0
                match = re.fullmatch(r"bytes=(\d+)-", byte_range or "")
                if match and not served.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                if served.disposition_name:
                    self.send_header("Content-Disposition", f'attachment; filename="{served.disposition_name}"')
                self.end_headers()
                if served.truncate_at is not None:
                    body = body[:served.truncate_at]
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
