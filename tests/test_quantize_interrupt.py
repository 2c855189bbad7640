#!/usr/bin/python3
"""test_quantize_interrupt: `llamaserve quantize` ended by SIGTERM or SIGINT while it writes
removes its temporary file OUT.tmp-XXXXXX, leaves no OUT and exits non-zero. No timing: the
test hands quantize a stderr pipe it has filled, so quantize stops at its first progress line
(written after the temporary file is made) until the signal comes, and inotify (through
ctypes) says when the temporary file has appeared."""
import ctypes
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile

from checklib import BIN, MODELS, check, summary

IN_CREATE = 0x100
HANG_GUARD = 120  # seconds; only turns a hang into a failure
libc = ctypes.CDLL(None, use_errno=True)


def full_pipe():
    """A pipe of one page whose buffer is full: the next write to it blocks."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x")
    except BlockingIOError:
        pass
    os.set_blocking(w, True)  # shared with the child's stderr: its writes must block
    return r, w


def created_names(fd):
    """Blocks (at most HANG_GUARD) for inotify events on fd; the names created."""
    if not select.select([fd], [], [], HANG_GUARD)[0]:
        return []
    buf, names, at = os.read(fd, 4096), [], 0
    while at < len(buf):
        _, mask, _, n = struct.unpack_from("iIII", buf, at)
        name = buf[at + 16:at + 16 + n].rstrip(b"\0").decode()
        if mask & IN_CREATE:
            names.append(name)
        at += 16 + n
    return names


def interrupt(sig):
    with tempfile.TemporaryDirectory(prefix="ls-test-quant-") as d:
        ino = libc.inotify_init1(os.O_CLOEXEC)
        check(ino >= 0 and libc.inotify_add_watch(ino, d.encode(), IN_CREATE) >= 0,
              f"inotify: errno {ctypes.get_errno()}")
        r, w = full_pipe()
        dst = os.path.join(d, "out.gguf")
        p = subprocess.Popen([BIN, "quantize", os.path.join(MODELS, "kjv-demo.gguf"), dst, "Q8_0"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w)
        os.close(w)
        names = created_names(ino)
        os.close(ino)
        check(len(names) == 1 and names[0].startswith("out.gguf.tmp-"),
              f"signal {sig}: created {names}")
        p.send_signal(sig)
        rc = p.wait(timeout=HANG_GUARD)
        os.close(r)
        check(rc == -sig, f"signal {sig}: exit status {rc}, want death by the signal")
        left = os.listdir(d)
        check(left == [], f"signal {sig}: {left} left behind")


for s in (signal.SIGTERM, signal.SIGINT):
    interrupt(s)
sys.exit(summary())
