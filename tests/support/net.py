from __future__ import annotations

import socket

#: every port handed out in this process: the kernel may give a closed probe's port again at once,
#: and two engines of one cluster were once given the same one (the second could not bind)
_given: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now and not handed out before in this process (the
    caller binds it soon after)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
