#!/usr/bin/env python3
"""A stand-in for criu-image-streamer's capture side, for tests/e2e/criu_modes.rs.

criu-image-streamer is packaged nowhere the tests provision from, so this speaks the part of
its protocol `criu dump --stream` uses (CRIU's criu/img-streamer.c and
images/img-streamer.proto, 4.1 and 4.2): it listens on IMAGES_DIR/streamer-capture.sock; CRIU
connects once, and for every image file it writes sends a u32 (little-endian) size and an
img_streamer_request_entry message (field 1, the file name), then one end of a pipe with
SCM_RIGHTS (one byte of data), and writes the file into the pipe. This stores each file, read
to its end, as CAPTURE_DIR/NAME, and exits 0 when CRIU closes the socket (1 on anything it
does not understand). It is not a streamer: nothing is compressed, sent on or served back.

Usage: streamer_standin.py IMAGES_DIR CAPTURE_DIR
"""
import os
import socket
import sys
import threading


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            if data:
                sys.exit(f"streamer_standin: CRIU closed the socket inside a message ({len(data)} of {n} bytes)")
            return None
        data += chunk
    return data


def varint(buf, at):
    value = shift = 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, at


def filename(msg):
    """Field 1 (string) of img_streamer_request_entry."""
    at = 0
    while at < len(msg):
        key, at = varint(msg, at)
        if key >> 3 == 1 and key & 7 == 2:
            n, at = varint(msg, at)
            return msg[at : at + n].decode()
        sys.exit(f"streamer_standin: unexpected field {key >> 3} in a request")
    sys.exit("streamer_standin: a request without a file name")


def store(fd, path):
    with os.fdopen(fd, "rb") as pipe, open(path, "wb") as out:
        while chunk := pipe.read(1 << 16):
            out.write(chunk)


def main():
    images, capture = sys.argv[1], sys.argv[2]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(images, "streamer-capture.sock"))
    listener.listen(1)
    conn, _ = listener.accept()
    writers = []
    while True:
        size = read_exact(conn, 4)
        if size is None:
            break
        name = filename(read_exact(conn, int.from_bytes(size, "little")))
        if "/" in name or name in (".", ".."):
            sys.exit(f"streamer_standin: refusing the file name {name!r}")
        _, fds, _, _ = socket.recv_fds(conn, 1, 1)
        if len(fds) != 1:
            sys.exit(f"streamer_standin: no pipe came with {name}")
        t = threading.Thread(target=store, args=(fds[0], os.path.join(capture, name)))
        t.start()
        writers.append(t)
    for t in writers:
        t.join()


if __name__ == "__main__":
    main()
