"""One writer per checkpoint: a training run holds a lock on its --out. Real processes: a second run is refused
while the first trains (touching nothing), and allowed once the first has ended or been killed with -9; the lock
itself (links resolved, removed on release, a filesystem without locks) in process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from charrnn.checkpoint.lock import Locked, OutLock, lock_path
from charrnn.cli import app

CORPUS = "the quick brown fox jumps over the lazy dog\n" * 40
TINY = ["--hidden", "8", "--embed", "4", "--layers", "1", "--seq", "8", "--batch", "2", "--val-frac", "0",
        "--seed", "1"]


def charrnn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def wait_for_holder(pid: int, lock: str) -> None:
    """Until the process `pid` holds the lock (it wrote its pid in the lock file)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(lock) as f:
                if f.read().split()[:1] == [str(pid)]:
                    return
        except (OSError, IndexError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never took {lock}")


def test_a_second_run_is_refused_while_the_first_trains_and_allowed_after_it_ends_or_is_killed(tmp_path):
    from charrnn.checkpoint import load

    (tmp_path / "c.txt").write_text(CORPUS)
    out, link = tmp_path / "run" / "m.npz", tmp_path / "link.npz"
    first = charrnn("train", tmp_path / "c.txt", "-o", out, *TINY, "--steps", "2")
    assert first.returncode == 0, first.stderr
    assert sorted(os.listdir(out.parent)) == ["m.npz"]  # a run that ended removed its lock file
    link.symlink_to(out)
    holder = subprocess.Popen([sys.executable, "-m", "charrnn", "train", tmp_path / "c.txt", "-o", out, "--resume",
                               "--steps", "1000000", "--checkpoint-every", "1h"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = lock_path(out)
        wait_for_holder(holder.pid, lock)  # the run after the first one ended was allowed
        before = out.read_bytes(), out.stat().st_mtime_ns, open(lock).read(), os.stat(lock).st_mtime_ns
        for args in (["--force"], ["--resume"], ["--resume", "--steps", "5"]):
            for target in (out, link):  # through a link to the same file too
                done = charrnn("train", tmp_path / "c.txt", "-o", target, *TINY, *args)
                assert done.returncode == 1 and done.stdout == "", done.stderr
                assert done.stderr.splitlines() == [f"charrnn: error: {target} is in use by another training run "
                                                    f"(pid {holder.pid}); wait for it to end, or choose another "
                                                    f"--out"]
        assert (out.read_bytes(), out.stat().st_mtime_ns, open(lock).read(), os.stat(lock).st_mtime_ns) == before
        assert holder.poll() is None  # still training
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert os.path.exists(lock) and load(out).meta["step"] == 2  # kill -9 left the file, and saved nothing
    after = charrnn("train", tmp_path / "c.txt", "-o", out, "--resume", "--steps", "4")
    assert after.returncode == 0, after.stderr
    assert load(out).meta["step"] == 4 and sorted(os.listdir(out.parent)) == ["m.npz"]


def test_the_lock_names_its_holder_is_removed_on_release_and_guards_the_real_file(tmp_path):
    out = tmp_path / "new" / "deeper" / "m.npz"
    link = tmp_path / "link.npz"
    link.symlink_to(out)
    assert lock_path(link) == lock_path(out) == str(out.resolve()) + ".lock"
    with OutLock(out) as held:
        assert held.supported and open(held.path).read().split()[0] == str(os.getpid())
        with pytest.raises(Locked) as refused:  # another open file description: flock refuses it too
            OutLock(link).acquire()
        assert refused.value.holder == str(os.getpid()) and str(os.getpid()) in str(refused.value)
    assert not os.path.exists(lock_path(out)) and not (tmp_path / "new").exists()  # nothing left behind
    with OutLock(out):  # free again
        pass


def test_a_lock_file_replaced_while_waiting_is_not_trusted(tmp_path, monkeypatch):
    """A run that locked a lock file which its holder had removed (as it ended) locks the new one instead."""
    out = tmp_path / "m.npz"
    lock = OutLock(out)
    real_open, calls = lock._open, []

    def open_then_replace():
        fd = real_open()
        if not calls:  # the first file we locked goes away under us, as a finishing holder removes it
            os.unlink(lock.path)
        calls.append(fd)
        return fd

    monkeypatch.setattr(lock, "_open", open_then_replace)
    lock.acquire()
    assert len(calls) == 2 and os.fstat(lock.fd).st_ino == os.stat(lock.path).st_ino
    lock.release()


def test_a_filesystem_without_locks_trains_with_a_warning(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    (tmp_path / "c.txt").write_text(CORPUS)
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "c.txt"), "-o", str(out), *TINY, "--steps", "2"])
    assert result.exit_code == 0, result.stderr
    assert "cannot lock files, so a second run into it would not be refused" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["c.txt", "m.npz"]


def test_an_out_whose_lock_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(OutLock, "_open", denied)
    (tmp_path / "c.txt").write_text(CORPUS)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "c.txt"), "-o", str(tmp_path / "m.npz"), *TINY])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"charrnn: error: cannot lock {tmp_path / 'm.npz'}: Permission "
                                                  f"denied ({tmp_path / 'm.npz'}.lock); choose another --out"]
