"""One writer per checkpoint: a training run holds an exclusive lock on its --out for as long as it runs.

The lock is an `fcntl.flock` on a lock file beside the checkpoint's real file (symbolic links resolved, so two runs
that reach one file by different paths collide): `model.npz` is guarded by `model.npz.lock`, which holds the
holder's process id and host name for the message a second run shows. The kernel releases a flock when its
process ends in any way, kill -9 included, so a lock is never stale; a lock file left by a killed run is just
reused. On a normal end the holder removes the lock file while it still holds the lock, and a run that takes a
lock checks that the file it locked is still the one at the path (else it tries again), so removing it is safe.

Simplification chosen on purpose: where the filesystem has no working flock (ENOLCK, EOPNOTSUPP, ENOSYS: some
network and FUSE filesystems), the run goes on unguarded and the caller says so (`OutLock.supported` is False):
refusing would make charrnn unusable there, and the lock is a guard against a mistake, not part of what a run
computes. Hard links to one file under two names are not recognised as one checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
MAX_TRIES = 100  # a lock file replaced under us this often: give up with an OSError


class Locked(Exception):
    """Another process holds the lock; `holder` is what it wrote in the lock file ("PID" or "PID on HOST")."""

    def __init__(self, out: str, holder: str | None):
        self.out, self.holder = out, holder
        by = f" (pid {holder})" if holder else ""
        super().__init__(f"{out} is in use by another training run{by}")


def lock_path(out) -> str:
    """The lock file that guards the checkpoint `out`: NAME.lock beside the real file (links resolved)."""
    return os.path.realpath(os.fspath(out)) + ".lock"


def _holder(fd: int) -> str | None:
    """What the holder wrote: 'PID' (same host) or 'PID on HOST'; None when unreadable or not yet written."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        parts = os.pread(fd, 200, 0).decode().split()
        if parts and parts[0].isdigit():
            host = " ".join(parts[1:])
            return parts[0] if not host or host == socket.gethostname() else f"{parts[0]} on {host}"
    return None


def _make_parents(directory: str) -> list[str]:
    """Create `directory` and its missing parents; the ones created, deepest first."""
    created, d = [], directory
    while d and not os.path.isdir(d) and os.path.dirname(d) != d:
        created.append(d)
        d = os.path.dirname(d)
    os.makedirs(directory, exist_ok=True)
    return created


class OutLock:
    """The lock on one checkpoint path; `acquire()` it before anything is written there, `release()` at the end
    (or use it as a context manager). Raises Locked when another process holds it; OSError when the lock file
    cannot be made."""

    def __init__(self, out):
        self.out, self.path = os.fspath(out), lock_path(out)
        self.fd: int | None = None
        self.supported = True  # False: the filesystem cannot lock; the run goes on unguarded
        self.created: list[str] = []  # directories made for the lock file (removed on release when empty)

    def acquire(self) -> "OutLock":
        import fcntl

        for _ in range(MAX_TRIES):
            self.created += _make_parents(os.path.dirname(self.path))
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                busy = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
                holder, empty = (_holder(fd) if busy else None), os.fstat(fd).st_size == 0
                os.close(fd)
                if busy:
                    raise Locked(self.out, holder) from None
                if e.errno not in UNSUPPORTED:
                    raise
                self.supported = False
                if empty:  # no holder ever wrote in it: leave no lock file that locks nothing
                    with contextlib.suppress(OSError):
                        os.unlink(self.path)
                return self
            if self._still_there(fd):
                self.fd = fd
                self._write_holder()
                return self
            os.close(fd)  # the holder we waited on removed it as it ended: lock the new one
        raise OSError(errno.EAGAIN, f"the lock file {self.path} keeps being replaced")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:  # someone else's lock file in a directory we may write: a read-only fd can lock
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def _still_there(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_holder(self) -> None:
        with contextlib.suppress(OSError):  # a read-only lock file still locks; the pid is only for the message
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        """Remove the lock file while still holding it, then unlock; directories made for it go if empty."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
        for d in self.created:  # deepest first; rmdir refuses one that holds anything (a checkpoint)
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.created = []

    def __enter__(self) -> "OutLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
