"""Python peers for tests/interop.rs (standard library only).

Usage: python3 peer.py MODE ADDRESS ARGS...

ADDRESS is "host:port" (TCP; port 0 picks one), "@name" (abstract Unix socket) or a filesystem
path, the forms the Rust `Address` parser reads. Keys are hex, "-" for none. A peer that listens
prints its address as the first line on stdout once it accepts connections.

Exit status: 0 success, 3 AuthenticationError (message on stdout as "auth-error: ..."), 1 anything
else (traceback on stderr). Every peer ends on its own: an alarm fires after LIMIT seconds.

Modes:
  listen ADDRESS KEY SCENARIO    CPython multiprocessing.connection.Listener, one connection
  client ADDRESS KEY SCENARIO    CPython multiprocessing.connection.Client
  modern-server ADDRESS KEY1 KEY2 CHALLENGE_DIGEST RESPONSE_DIGEST
  modern-client ADDRESS KEY1 KEY2 CHALLENGE_DIGEST RESPONSE_DIGEST
      the 3.12+ handshake by hand over a raw socket (the server challenges first with KEY1, then
      answers with KEY2; the client answers with KEY1, then challenges with KEY2); a
      RESPONSE_DIGEST of "same" answers with the challenge's digest, as CPython does
  long-frame ADDRESS             connects (no key) and sends long-form (ff ff ff ff + u64) frames

Scenarios: "exchange" (the full conversation of tests/interop.rs) and "ping" (one echo).
"""

import hmac
import math
import os
import pickle
import signal
import socket
import struct
import sys

LIMIT = 10  # seconds before a peer gives up
SOCKET_TIMEOUT = 5


def on_alarm(signum, frame):
    raise TimeoutError(f"python peer still running after {LIMIT} s")


signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(LIMIT)


def parse_address(text):
    if text.startswith("@"):
        return "\0" + text[1:]
    host, sep, port = text.rpartition(":")
    if sep and host and "/" not in host and port.isdigit():
        return (host.strip("[]"), int(port))
    return text


def format_address(address):
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    if isinstance(address, bytes):
        address = address.decode()
    if address.startswith("\0"):
        return "@" + address[1:]
    return address


def parse_key(text):
    return None if text == "-" else bytes.fromhex(text)


def announce(address):
    print(format_address(address), flush=True)


# ---------------------------------------------------------------------------------------------
# The conversation. Its Rust half is `exchange` in tests/interop.rs; both follow the same order.

MIB = bytes(range(256)) * 4096  # 1 MiB

# Python sends these; Rust checks each (in this order).
KNOWN = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    -(2**100),
    3.5,
    float("-inf"),
    "héllo wörld ✓ 日本 🎉",
    b"\x00\xffbytes",
    None,
    True,
    False,
    [1, 2, 3],
    (1, "a", None),
    {"a": 1, "b": 2},
    {1: "x", 2: "y"},
    {"list": [1, (2, 3), {"x": b"y"}], "t": (True, None, 1.25), "s": {1, 2}},
    [],
    (),
    {},
]

# Rust sends these; Python checks each and answers "ok" (in this order).
EXPECTED = [
    42,
    -(2**63),
    2**64 - 1,
    -(2**100),
    2.5,
    -1e300,
    float("inf"),
    "grüße, 世界 🦀",
    b"\x00\x01\x02\xff",
    None,
    True,
    False,
    [1, 2, 3],
    (1, "two", 3.0),
    {"a": 1, "b": 2},
    {1: "x", 2: "y"},
    [("first", {"k": [1.5, None]}), ("second", {})],
    {(1, "k"): [b"v", None, (True,)], "set": {1, 2, 3}, "": -7},
    [],
    "",
]


def same(a, b):
    """Equal and of the same types all the way down (1 is not True, a list is not a tuple)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def exchange(conn):
    # Raw bytes: echo what Rust sends (empty, short, 1 MiB, binary), then send our own.
    for _ in range(4):
        conn.send_bytes(conn.recv_bytes())
    got = conn.recv_bytes()
    if got != MIB:
        raise AssertionError(f"1 MiB message from Rust differs ({len(got)} bytes)")
    conn.send_bytes(b"")
    conn.send_bytes(MIB)
    # Pickles: known values to Rust.
    for value in KNOWN:
        conn.send(value)
    # Pickles from Rust, checked here.
    for expected in EXPECTED:
        got = conn.recv()
        conn.send("ok" if same(got, expected) else f"mismatch: got {got!r}, expected {expected!r}")
    # Echo whatever Rust sends until "bye".
    while True:
        value = conn.recv()
        if value == "bye":
            break
        conn.send(value)
    conn.send_bytes(b"done")
    # Rust closes its end now.
    try:
        extra = conn.recv_bytes()
    except EOFError:
        return
    raise AssertionError(f"expected end of file, got {extra!r}")


def ping(conn):
    conn.send_bytes(conn.recv_bytes())
    try:
        conn.recv_bytes()
    except EOFError:
        return
    raise AssertionError("expected end of file")


SCENARIOS = {"exchange": exchange, "ping": ping}


# ---------------------------------------------------------------------------------------------
# CPython's Listener and Client.


def cpython_listen(address, key, scenario):
    from multiprocessing.connection import Listener

    with Listener(parse_address(address), authkey=parse_key(key)) as listener:
        listener._listener._socket.settimeout(SOCKET_TIMEOUT)
        announce(listener.address if not address.startswith("@") else address)
        with listener.accept() as conn:
            SCENARIOS[scenario](conn)


def cpython_client(address, key, scenario):
    from multiprocessing.connection import Client

    with Client(parse_address(address), authkey=parse_key(key)) as conn:
        SCENARIOS[scenario](conn)


# ---------------------------------------------------------------------------------------------
# Raw framing and the 3.12+ handshake by hand.


class AuthError(Exception):
    pass


def recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError("end of file")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock, maxlength=None):
    (n,) = struct.unpack("!i", recv_exact(sock, 4))
    if n == -1:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    if maxlength is not None and n > maxlength:
        raise OSError("bad message length")
    return recv_exact(sock, n)


def send_frame(sock, payload):
    sock.sendall(struct.pack("!i", len(payload)) + payload)


CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"


def deliver_challenge(sock, key, digest):
    message = b"{" + digest.encode() + b"}" + os.urandom(40)
    send_frame(sock, CHALLENGE + message)
    response = recv_frame(sock, 256)
    # Our Rust side answers with the challenge's digest: insist on it.
    prefix = b"{" + digest.encode() + b"}"
    expected = prefix + hmac.new(key, message, digest).digest()
    if not hmac.compare_digest(response, expected):
        send_frame(sock, FAILURE)
        raise AuthError(f"digest received was wrong: {response[:12]!r}... ({len(response)} bytes)")
    send_frame(sock, WELCOME)


def answer_challenge(sock, key, response_digest):
    challenge = recv_frame(sock, 256)
    # Rust challenges in the 3.12+ form: {sha256} and 40 random bytes.
    if not (challenge.startswith(CHALLENGE + b"{sha256}") and len(challenge) == len(CHALLENGE) + 8 + 40):
        raise AssertionError(f"not a 3.12+ challenge: {challenge!r}")
    message = challenge[len(CHALLENGE):]
    digest = "sha256" if response_digest == "same" else response_digest
    send_frame(sock, b"{" + digest.encode() + b"}" + hmac.new(key, message, digest).digest())
    verdict = recv_frame(sock, 256)
    if verdict != WELCOME:
        raise AuthError(f"digest sent was rejected: {verdict!r}")


def echo_raw(sock):
    send_frame(sock, recv_frame(sock))
    if sock.recv(1) != b"":
        raise AssertionError("expected end of file")


def family_of(address):
    return socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX


def modern_server(address, key1, key2, challenge_digest, response_digest):
    address = parse_address(address)
    with socket.socket(family_of(address), socket.SOCK_STREAM) as listener:
        listener.settimeout(SOCKET_TIMEOUT)
        listener.bind(address)
        try:
            listener.listen(1)
            announce(listener.getsockname() if isinstance(address, tuple) else address)
            sock, _ = listener.accept()
        finally:
            if isinstance(address, str) and not address.startswith("\0"):
                os.unlink(address)
        with sock:
            sock.settimeout(SOCKET_TIMEOUT)
            deliver_challenge(sock, parse_key(key1), challenge_digest)
            answer_challenge(sock, parse_key(key2), response_digest)
            echo_raw(sock)


def modern_client(address, key1, key2, challenge_digest, response_digest):
    address = parse_address(address)
    with socket.socket(family_of(address), socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(address)
        answer_challenge(sock, parse_key(key1), response_digest)
        deliver_challenge(sock, parse_key(key2), challenge_digest)
        echo_raw(sock)


def long_frame(address):
    address = parse_address(address)
    with socket.socket(family_of(address), socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(address)
        payload = b"long form, small payload"
        # One frame in the long form, one empty long-form frame, one pickle in the long form.
        sock.sendall(b"\xff\xff\xff\xff" + struct.pack("!Q", len(payload)) + payload)
        sock.sendall(b"\xff\xff\xff\xff" + struct.pack("!Q", 0))
        pickled = pickle.dumps({"long": [1, 2, 3]}, protocol=4)
        sock.sendall(b"\xff\xff\xff\xff" + struct.pack("!Q", len(pickled)) + pickled)
        # Rust answers in the short form.
        header = recv_exact(sock, 4)
        if header != struct.pack("!i", 2) or recv_exact(sock, 2) != b"ok":
            raise AssertionError(f"unexpected answer header {header!r}")
        if sock.recv(1) != b"":
            raise AssertionError("expected end of file")


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    from multiprocessing import AuthenticationError

    try:
        if mode == "listen":
            cpython_listen(*args)
        elif mode == "client":
            cpython_client(*args)
        elif mode == "modern-server":
            modern_server(*args)
        elif mode == "modern-client":
            modern_client(*args)
        elif mode == "long-frame":
            long_frame(*args)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except (AuthenticationError, AuthError) as e:
        print(f"auth-error: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    print("python-ok", flush=True)


if __name__ == "__main__":
    main()
