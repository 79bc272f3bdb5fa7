#!/usr/bin/env python3
"""A rogue listener (regressions/README.md): answers a braid hello with a HelloAck whose
eager limit is 2^32 (TCP rails only), then sends an EAGER frame of 1 MiB on the control
socket, more than the connector's control buffer holds.

    python3 tests/fuzz/regressions/rogue_listener.py PORT &
    BRAID_TRANSPORT=tcp BUILD/perf/braid_send_lat 127.0.0.1 -p PORT

Expected (since 195f708): the client refuses the ack and exits at once. Before, it spun
at 100% CPU in Channel::readAll and never returned.
"""
import socket
import struct
import sys
import threading

MAGIC = 0x44494152
HELLO_ACK, FRAME_MAGIC, EAGER = 2, 0xB7A1, 2


def read_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError("peer closed")
        b += chunk
    return b


def main():
    port = int(sys.argv[1])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)
    ctrl, _ = ls.accept()
    magic, version, typ, length, _ = struct.unpack("<IHHII", read_exact(ctrl, 16))
    hello = read_exact(ctrl, length)
    nonce = struct.unpack_from("<Q", hello, 8)[0]
    print(f"rogue: hello (version {version}, type {typ}, {length} bytes)", flush=True)
    rail = struct.pack("<HHI16s16s", socket.AF_INET, port, 0,
                       socket.inet_aton("127.0.0.1"), b"lo")
    body = struct.pack("<QQIIQII", 1, nonce, 1, 1, 1 << 32, 0, 0) + rail
    # Answered in the connector's own protocol version.
    ctrl.sendall(struct.pack("<IHHII", MAGIC, version, HELLO_ACK, len(body), 0) + body)
    ls.settimeout(10)
    try:
        data, _ = ls.accept()
    except socket.timeout:
        print("rogue: no data socket joined: the connector refused the ack", flush=True)
        return
    read_exact(data, 16 + 24)  # the join
    print("rogue: joined; sending a 1 MiB EAGER frame on the control socket", flush=True)
    n = 1 << 20
    frame = struct.pack("<HBBIQQQQ", FRAME_MAGIC, EAGER, 0, n, 0, 0, 0, n) + b"\x5a" * n
    threading.Thread(target=ctrl.sendall, args=(frame,), daemon=True).start()
    threading.Event().wait(60)


if __name__ == "__main__":
    main()
