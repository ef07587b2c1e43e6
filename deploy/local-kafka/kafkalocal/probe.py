"""Readiness check that speaks just enough of the Kafka wire protocol to send a Metadata request."""

from __future__ import annotations

import socket
import struct

METADATA_API_KEY = 3
# Metadata v4 is the oldest version Kafka 4.x still accepts (KIP-896 removed v0-v3) and the
# newest one without the flexible (tagged-field) encoding, so it needs no varint support.
METADATA_API_VERSION = 4
CORRELATION_ID = 7
CLIENT_ID = b"kafka-local-probe"


def _encode_metadata_request() -> bytes:
    header = struct.pack(">hhih", METADATA_API_KEY, METADATA_API_VERSION, CORRELATION_ID, len(CLIENT_ID))
    header += CLIENT_ID

    # topics = null (all topics), allow_auto_topic_creation = false
    body = struct.pack(">ib", -1, 0)

    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection before the response was complete")
        chunks.extend(chunk)
    return bytes(chunks)


def count_live_brokers(host: str, port: int, timeout_s: float = 2.0) -> int:
    """Send a Metadata request to ``host:port`` and return how many brokers the response lists.

    Raises ``OSError`` (including ``ConnectionError`` and ``socket.timeout``) when the broker
    does not accept the connection or sends no response within ``timeout_s``.
    """
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(_encode_metadata_request())

        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        response = _read_exact(sock, size)

    # Response header v0 (correlation id), then throttle_time_ms and the brokers array length.
    correlation_id, _throttle_ms, broker_count = struct.unpack_from(">iii", response, 0)
    if correlation_id != CORRELATION_ID:
        raise ConnectionError(f"unexpected correlation id {correlation_id} in Metadata response")
    return broker_count
