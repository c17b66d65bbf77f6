"""A real MLLP listener playing the clinic's interface engine, run as its own process.

Every complete message is parsed (python-hl7); its control id (MSH-10) is appended to
``LOG.received`` and, the first time it is seen, to ``LOG.accepted`` (an engine that keeps
control ids: a resent message is acknowledged and not taken twice), each line flushed to disk
before the ACK goes out. Modes: ``aa`` (accept), ``ae`` / ``ar`` (refuse with that code),
``silent`` (never answer), ``close`` (read part of a message, then close the connection).

    python -m tests.hl7out.mllp_listener PORT LOG MODE [DELAY_S]
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import hl7

from devices.protocols.hl7 import MllpDeframer, mllp_wrap


def ack(control_id: str, code: str, text: str = "") -> str:
    return (
        f"MSH|^~\\&|ENGINE|CLINIC|KETAMON|BAY|20261130090000+0000||ACK^R01^ACK|A{control_id}|P|2.6"
        f"\rMSA|{code}|{control_id}|{text}\r"
    )


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def serve(port: int, log: Path, mode: str, delay: float) -> None:
    received = log.with_suffix(".received")
    accepted = log.with_suffix(".accepted")
    seen = set(accepted.read_text().split()) if accepted.exists() else set()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        deframer = MllpDeframer()
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                if mode == "close":
                    break  # part of a message read: hang up mid-message
                for event in deframer.feed(data):
                    if event.frame is None:
                        continue
                    msg = hl7.parse(event.frame.decode("utf-8").replace("\n", "\r"))
                    cid = str(msg.segment("MSH")[10])
                    _append(received, cid)
                    if mode == "silent":
                        continue
                    if mode in ("ae", "ar"):
                        conn.sendall(mllp_wrap(ack(cid, mode.upper(), "test engine refuses")))
                        continue
                    if cid not in seen:
                        seen.add(cid)
                        _append(accepted, cid)
                    time.sleep(delay)
                    conn.sendall(mllp_wrap(ack(cid, "AA")))


if __name__ == "__main__":
    serve(
        int(sys.argv[1]),
        Path(sys.argv[2]),
        sys.argv[3],
        float(sys.argv[4]) if len(sys.argv) > 4 else 0.0,
    )
