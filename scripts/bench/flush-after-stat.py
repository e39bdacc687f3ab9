#!/usr/bin/env python3
"""What a stat of a file costs the next write + fdatasync of it.

    python3 scripts/bench/flush-after-stat.py [DIR] [ROUNDS]

Writes 16 KiB into an 8 MiB file (overwriting, as the store's WAL does once
it has grown) and flushes it with fdatasync, ROUNDS times (default 2000):
once with nothing else, once with a full stat of the file before each write
(what `std::fs::metadata` does), once with a statx for the inode number only
(what the store's identity check does). On kernels with fine-grained
timestamps (Linux 6.13+) a stat that reads the timestamps makes the next
write update the modification time, and fdatasync then writes the inode as
well. Prints wall and CPU time per write + fdatasync. DIR defaults to the
current directory: use the filesystem the database lives on.
"""
import ctypes
import os
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "."
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, STATX_INO = -100, 0x100
statx_buf = ctypes.create_string_buffer(256)


def statx_ino(path: bytes) -> None:
    if libc.statx(AT_FDCWD, path, 0, STATX_INO, statx_buf) != 0:
        raise OSError(ctypes.get_errno(), "statx")


fd, path = tempfile.mkstemp(dir=directory, prefix="flush-after-stat.")
try:
    size, chunk = 8 << 20, b"x" * 16384
    os.write(fd, b"\1" * size)
    os.fsync(fd)
    bpath = path.encode()
    before = {
        "nothing": lambda: None,
        "full stat": lambda: os.stat(path),
        "statx, inode only": lambda: statx_ino(bpath),
    }
    for _ in range(2):
        for name, first in before.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(rounds):
                first()
                os.pwrite(fd, chunk, (i * len(chunk)) % size)
                os.fdatasync(fd)
            wall = (time.perf_counter() - wall) / rounds * 1e6
            cpu = (time.process_time() - cpu) / rounds * 1e6
            print(f"{name:18s} {wall:6.0f} µs wall  {cpu:6.0f} µs CPU per write + fdatasync")
finally:
    os.close(fd)
    os.unlink(path)
