"""A TCP forwarder a test starts when it chooses: a database port that accepts connections only from then on."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from psycopg.conninfo import conninfo_to_dict, make_conninfo

CHUNK = 65536  # bytes per read


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice, released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tcp_url(target: str, port: int) -> str:
    """`target` reached through 127.0.0.1:port instead."""
    params = conninfo_to_dict(target)
    params.update(host="127.0.0.1", port=str(port))
    return make_conninfo(**params)


def _connect(target: str) -> socket.socket:
    params = conninfo_to_dict(target)
    host, port = params.get("host") or "/tmp", int(params.get("port") or 5432)
    if host.startswith("/"):  # libpq's Unix socket: a directory holding .s.PGSQL.<port>
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(f"{host}/.s.PGSQL.{port}")
        return sock
    return socket.create_connection((host, port))


@contextlib.contextmanager
def forwarding(port: int, target: str) -> Iterator[None]:
    """Listen on 127.0.0.1:port and forward every connection to the database of `target` (a connection
    string: its host and port, or its Unix socket) until the block ends."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    open_sockets: list[socket.socket] = [listener]

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(CHUNK):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the block ended
            while True:
                client, _ = listener.accept()
                upstream = _connect(target)
                open_sockets.extend((client, upstream))
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(src, dst), name="proxy-pipe", daemon=True).start()

    threading.Thread(target=accept, name="proxy-accept", daemon=True).start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.close()
