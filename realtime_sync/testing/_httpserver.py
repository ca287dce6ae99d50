"""The HTTP serving shared by the fake REST servers (Jifeline OAuth/events, Chatwoot REST)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

_S = TypeVar("_S", bound="FakeHttpServer")


class FakeHttpServer:
    """A threading HTTP server on ``host:port`` (0: a free port) whose request handler class
    (``handler_class()``, a subclass of BaseHTTPRequestHandler) reaches the fake as ``self.fake``."""

    thread_name: ClassVar[str] = "realtime_sync-fake-http"

    host: str
    port: int

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _init_http(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self: _S) -> _S:
        handler: Any = type("_Handler", (self.handler_class(),), {"fake": self})
        self._httpd = httpd = ThreadingHTTPServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
