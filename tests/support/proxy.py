"""A small TCP proxy on loopback that can turn into a black hole.

``blackhole()`` keeps every connection open but silently drops what either side
sends (no FIN, no RST), like a cable pulled somewhere on the way; ``heal()``
forwards again. Only ever listens on and connects to 127.0.0.1.
"""

from __future__ import annotations

import select
import socket
import threading

from dev.broker import free_port


class BlackholeProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self._holed = threading.Event()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, name="proxy-accept", daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def blackhole(self) -> None:
        self._holed.set()

    def heal(self) -> None:
        self._holed.clear()

    def _serve(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._holed.is_set():
                # New connections vanish too: accepted, then never answered.
                self._sockets.append(client)
                thread = threading.Thread(target=self._swallow, args=(client,), daemon=True)
            else:
                upstream = socket.create_connection(self.upstream)
                self._sockets += [client, upstream]
                thread = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _swallow(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready and not sock.recv(65536):
                return

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(peers), [], [], 0.2)
            for sock in ready:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if self._holed.is_set():
                        continue  # a black hole tells nobody anything
                    for s in (a, b):
                        s.close()
                    return
                if not self._holed.is_set():
                    peers[sock].sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
