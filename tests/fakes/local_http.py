"""The one way the fakes listen: a tornado HTTPServer on 127.0.0.1, never another address."""

from __future__ import annotations

import socket

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application


class LocalHTTP:
    """Base for fake servers: `serve(handlers)` binds (an ephemeral port, or the last one again so a
    restarted fake keeps its URL), `url` says where, `stop()` closes every connection."""

    port = 0
    _http: HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, handlers: list) -> None:
        if self.port:  # a restart: the clients already hold this URL
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(128)
            sock.setblocking(False)
            sockets = [sock]
        else:
            sockets = bind_sockets(0, "127.0.0.1")
            self.port = sockets[0].getsockname()[1]
        self._http = HTTPServer(Application(handlers))
        self._http.add_sockets(sockets)

    async def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
            self._http = None
