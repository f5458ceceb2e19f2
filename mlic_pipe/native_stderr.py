"""Keep the image decoders' raw lines out of the terminal: a filter on file descriptor 2 for the CLI.

When the loader skips an undecodable file it warns once, naming the file and the reason. Below DALI's
Python API, nvImageCodec (``[ERROR] [jpeg_parser] Invalid marker``) and libjpeg-turbo (``Corrupt JPEG
data: ...``, ``Premature end of JPEG file``) print their own lines for the same file, from C++ threads,
straight to file descriptor 2. DALI has no switch for them (``DALI_NVIMGCODEC_LOG_LEVEL`` clamps to 1..5,
and 1 still prints errors), so the only place to stop them is the descriptor itself.

`filter_native_stderr` points descriptor 2 at a pipe read by a small child process that forwards
everything else unchanged and at once (progress bars' partial lines included) and sets the decoder
lines aside in a log file, named in one closing line. A child process, not a thread: if this process
dies, the child still drains the pipe, so a crash's last words reach the terminal. The CLI installs it;
``MLIC_PIPE_RAW_STDERR=1`` turns it off. Python users who want it call it themselves.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys

__all__ = ["NOISE", "filter_native_stderr", "forward"]

# A line the decoders print for a file the loader skips and names itself.
NOISE = (rb"^(\x1b\[[0-9;]*m)?\[(ERROR|WARNING)\] (\x1b\[[0-9;]*m)?\[[a-z_]*(jpeg|png|tiff|webp|jpeg2k|nvjpeg|"
         rb"decoder|parser|codec)[a-z0-9_]*\]"
         rb"|^Corrupt JPEG data|^Premature end of JPEG file|^Invalid JPEG file structure|^Not a JPEG file"
         rb"|^Warning: unknown JFIF revision|^Unsupported marker type")
_HOLD = (b"\x1b[", b"[", b"Corrupt", b"Premature", b"Invalid", b"Not a", b"Warning", b"Unsupported")


def forward(source: int, out, log_path: str) -> int:
    """Copy `source` to `out` until end of file, decoder lines to `log_path` instead; returns how many were held back.

    Complete lines are judged one by one; an unfinished line goes out at once unless it could still become a
    decoder line (those arrive whole, ending in a newline), so progress bars redraw without delay.
    """
    import re

    noise, held, log, pending = re.compile(NOISE), 0, None, b""
    while True:
        chunk = os.read(source, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = []
        for line in lines:
            if noise.search(line):
                held += 1
                log = log or open(log_path, "ab")
                log.write(line + b"\n")
            else:
                kept.append(line + b"\n")
        if pending and not any(pending.lstrip(b"\r").startswith(p) or p.startswith(pending.lstrip(b"\r"))
                               for p in _HOLD):
            kept.append(pending)
            pending = b""
        if kept:
            out.write(b"".join(kept))
            out.flush()
    if pending:
        out.write(pending)
    if log is not None:
        log.close()
    if held:
        out.write(f"mlic-pipe: {held} raw line(s) from the image decoders (about files skipped and named above) "
                  f"are in {log_path}; MLIC_PIPE_RAW_STDERR=1 prints them here\n".encode())
    out.flush()
    return held


def filter_native_stderr(log_dir: str | None = None) -> bool:
    """Route this process's file descriptor 2 through the decoder-line filter (once; see the module docstring).

    Returns whether the filter is on. Off when ``MLIC_PIPE_RAW_STDERR`` is set, or when descriptor 2 cannot
    be duplicated (no stderr at all).
    """
    if os.environ.get("MLIC_PIPE_RAW_STDERR") or getattr(filter_native_stderr, "_on", False):
        return bool(getattr(filter_native_stderr, "_on", False))
    from mlic_pipe.datasets.cache import cache_dir

    folder = log_dir or os.path.join(cache_dir(), "logs")
    try:
        os.makedirs(folder, exist_ok=True)
        original = os.dup(2)
    except OSError:
        return False
    log_path = os.path.join(folder, f"decoder-stderr-{os.getpid()}.log")
    read, write = os.pipe()
    try:  # this file run as a script: the child imports nothing of the package (no torch: it starts in ~30 ms)
        child = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), log_path], stdin=read,
                                 stdout=original, stderr=original, close_fds=True)
    except OSError:  # no interpreter to start (an embedded Python): stay unfiltered rather than fail the command
        for fd in (read, write, original):
            os.close(fd)
        return False
    os.close(read)
    sys.stderr.flush()
    os.dup2(write, 2)
    os.close(write)

    def restore() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(original, 2)  # our last write end closes: the child reads to the end and exits
        os.close(original)
        try:
            child.wait(timeout=5)  # a process we started may still hold the pipe: do not hang on it
        except subprocess.TimeoutExpired:
            pass
        filter_native_stderr._on = False

    atexit.register(restore)
    filter_native_stderr._on = True
    return True


if __name__ == "__main__":  # the child: forward stdin to stdout until the parent closes the pipe
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which closes the pipe; then we finish
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    forward(0, sys.stdout.buffer, sys.argv[1])
