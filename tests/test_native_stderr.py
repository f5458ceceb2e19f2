"""The CLI's filter on descriptor 2: decoder lines set aside, everything else forwarded unchanged and at once."""
import io
import os
import subprocess
import sys
import threading
import time

import pytest

from builders import encoded_image
from mlic_pipe.native_stderr import forward

DECODER_LINES = [b"\x1b[0;31m[ERROR] \x1b[0m[jpeg_parser] Invalid marker\n",
                 b"[ERROR] [libjpeg_turbo_decoder] Could not decode jpeg code stream - Premature end of JPEG data\n",
                 b"Corrupt JPEG data: 12 extraneous bytes before marker 0xd9\n",
                 b"Premature end of JPEG file\n"]


class _Sink(io.BytesIO):
    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def write(self, data):
        with self.lock:
            return super().write(data)

    def seen(self) -> bytes:
        with self.lock:
            return self.getvalue()


def _wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_forward_sets_decoder_lines_aside_and_passes_the_rest_at_once(tmp_path):
    read, write = os.pipe()
    sink, log = _Sink(), tmp_path / "decoder.log"
    held = []
    worker = threading.Thread(target=lambda: held.append(forward(read, sink, str(log))))
    worker.start()
    os.write(write, b"epoch 1\n" + DECODER_LINES[0][:9])  # a decoder line cut in two by the pipe
    os.write(write, DECODER_LINES[0][9:] + DECODER_LINES[1])
    os.write(write, b"\rreading:  50%|#####     | 5/10")  # a progress bar's unfinished line: out at once
    assert _wait_for(lambda: sink.seen().endswith(b"5/10"))
    os.write(write, b"\rreading: 100%|##########| 10/10\n" + DECODER_LINES[2] + DECODER_LINES[3])
    os.write(write, b"[x] a bracketed line of ours\nTraceback (most recent call last):\n  boom")
    os.close(write)
    worker.join(5)
    out = sink.getvalue()
    assert held == [4]
    assert out.startswith(b"epoch 1\n\rreading:  50%|#####     | 5/10\rreading: 100%|##########| 10/10\n"
                          b"[x] a bracketed line of ours\nTraceback (most recent call last):\n  boom")
    assert b"jpeg" not in out.split(b"boom")[0].lower() and b"Corrupt" not in out
    assert out.endswith(f"are in {log}; MLIC_PIPE_RAW_STDERR=1 prints them here\n".encode())
    assert log.read_bytes() == b"".join(DECODER_LINES)


@pytest.mark.slow
def test_the_command_names_a_skipped_file_once_without_the_decoders_raw_lines(tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for k in range(10):
        data = encoded_image(k)
        (tmp_path / "img" / f"{k}.jpg").write_bytes(data[: len(data) // 2] if k == 5 else data)
        rows.append(f"img/{k}.jpg,\"['{'ab'[k % 2]}']\"\n")
    (tmp_path / "labels.csv").write_text("path,labels\n" + "".join(rows))
    command = [sys.executable, "-m", "mlic_pipe", "profile", str(tmp_path / "labels.csv"), "--on-error", "skip",
               "--batch-size", "8", "--image-size", "64", "--mix", "none", "--steps", "2", "-q"]
    env = dict(os.environ, MLIC_PIPE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MLIC_PIPE_RAW_STDERR", None)
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.count("mlic-pipe skipped") == 1 and f"{tmp_path / 'img' / '5.jpg'}" in quiet.stderr
    assert "[jpeg_parser]" not in quiet.stderr and "Invalid marker" not in quiet.stderr
    logs = list((tmp_path / "cache" / "logs").iterdir())
    assert len(logs) == 1 and "Invalid marker" in logs[0].read_text() and str(logs[0]) in quiet.stderr
    raw = subprocess.run(command, env=dict(env, MLIC_PIPE_RAW_STDERR="1"), capture_output=True, text=True,
                         timeout=300)
    assert raw.returncode == 0 and "Invalid marker" in raw.stderr  # the filter, not DALI, keeps them out
