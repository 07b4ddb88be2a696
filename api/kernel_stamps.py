"""The kernel's receipt stamps on the API's sockets: how long a request waited before the worker saw it.

Linux stamps each received segment when a socket asks (SO_TIMESTAMPNS; set on a listening socket,
it is inherited by every connection accepted from it). A peek of a request with room for control
messages then returns when its last segment arrived, so its wait counts from there: the time it
spent in the accept queue and in a kept-alive connection's buffer, which the worker cannot see.
"""

from __future__ import annotations

import platform
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import Any

# Linux's SO_TIMESTAMPNS (the socket module does not name it; 35 in asm-generic, which these
# machines use; alpha, mips, parisc and sparc number it otherwise); its control message is a timespec.
SO_TIMESTAMPNS = 35
STAMPING_MACHINES = frozenset(
    {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "riscv64", "s390x", "ppc64le"}
)
STAMP = struct.Struct("@ll")
STAMP_SPACE = socket.CMSG_SPACE(STAMP.size)
# A kernel stamp further back than this is a stepped wall clock, not a wait: treated as no stamp.
PLAUSIBLE_WAIT_S = 60.0


def stamp_listeners(listeners: Iterable[Any], wanted: bool, log: Any) -> bool:
    """Ask the kernel to stamp what the listening sockets (and the TCP connections they accept)
    receive, or to stop (the sockets outlive a reload that turned stamps off); whether they do."""
    if not sys.platform.startswith("linux") or platform.machine() not in STAMPING_MACHINES:
        return False
    try:
        for listener in listeners:
            listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, int(wanted))
    except OSError as exc:
        log.warning("no kernel stamps on the listening sockets (%s): waits count from the hand-off", exc)
        return False
    return wanted


def kernel_wait(ancillary: list[tuple[int, int, bytes]]) -> float:
    """How long ago the kernel stamped what a recvmsg read (its SO_TIMESTAMPNS message, the last segment's; 0: none)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= STAMP.size:
            seconds, nanos = STAMP.unpack_from(data)
            waited = time.time() - seconds - nanos / 1e9
            return waited if 0.0 <= waited <= PLAUSIBLE_WAIT_S else 0.0
    return 0.0
