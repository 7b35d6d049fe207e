"""An overall deadline for one HTTP request made with urllib3.

urllib3's read timeout bounds each socket read, so a server that trickles its answer a byte
at a time never trips it. A Deadline shuts the request's socket down when it expires, which
wakes whatever read, write or TLS handshake is blocked on it; the connection classes below
hand it their socket as soon as the TCP connection exists.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import urllib3
import urllib3.connection


class DeadlineExceeded(urllib3.exceptions.TimeoutError):
    """The request as a whole (connect, TLS, request, answer, excerpt) ran out of time."""


class Deadline:
    """One overall deadline for a request. urllib3's read timeout bounds each socket read,
    so a receiver trickling a byte every half second would hold the call (and a worker
    thread) for ever; at the deadline a timer thread shuts the connection's socket down,
    which wakes whatever read, write or TLS handshake is blocked on it.

    It shuts down a duplicate of the socket taken as soon as the TCP connection exists: TLS
    wrapping detaches the original socket object, but shutdown acts on the connection, so
    the duplicate reaches it in every phase.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                sock.close()
                raise DeadlineExceeded(f"no answer within {self.seconds:g} s")
            self._sockets.append(sock.dup())

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        if self.expired:
            raise DeadlineExceeded(f"no answer within {self.seconds:g} s")


class WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        self._deadline = deadline
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._deadline.watch(sock)
        return sock


class WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        self._deadline = deadline
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._deadline.watch(sock)
        return sock
