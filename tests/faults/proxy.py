"""A TCP proxy in front of Redis that cuts every connection when a chosen command passes."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.helpers import free_port


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to Redis; `arm(marker, when)` cuts all links when `marker` goes by.

    `when="before"`: the command never reaches Redis. `when="after"`: Redis runs it, the
    reply is lost. Once cut, new connections are refused until `heal()`.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.marker: bytes | None = None
        self.when = "before"
        self.cut = threading.Event()
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes, when: str) -> None:
        self.marker, self.when = marker, when

    def heal(self) -> None:
        self.marker = None
        self.cut.clear()

    def close(self) -> None:
        self._server.close()
        self._cut_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, watch: bool) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                seen = watch and self.marker is not None and self.marker in tail + chunk
                if seen and self.when == "before":
                    self._cut_all()
                    return
                target.sendall(chunk)
                if seen:
                    self._cut_all()
                    return
                tail = chunk[-64:]
        except OSError:
            pass
        finally:
            for sock in (source, target):
                sock.close()

    def _cut_all(self) -> None:
        self.cut.set()
        self.cuts += 1
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
