"""Writing a user's output path: whole or not at all for files, through for the rest.

A regular file (or a path that does not exist yet) is written to a temporary
file beside it and renamed over it at the end, so a failed or killed run never
leaves half a file where the output should be; the result has the old file's
mode, or for a new file the umask's (as ``cp`` or a shell redirection would). A
symbolic link is followed: its target is written that way and the link stays a
link. Anything else that is not a folder (a FIFO, ``/dev/null``, a terminal) is
opened and written through: renaming over it would replace the device node or
leave a pipe's reader waiting. Errors name the user's path, never the temporary
file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile

__all__ = ["output_file", "same_file"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _oserror(err: OSError, name: str) -> OSError:
    """The same kind of error, naming the user's path."""
    return type(err)(err.errno, err.strerror, name)


def same_file(a, b) -> bool:
    """Whether two paths name one existing file (links followed)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def output_file(path, *, durable: bool = False):
    """A binary file object for path ("-" or None: standard output) that is in
    place once the block ends without an exception (see the module's notes);
    durable: fsync the file and its folder before the rename counts as done."""
    if path in ("-", None):
        sys.stdout.flush()
        raw = getattr(sys.stdout, "buffer", sys.stdout)
        yield raw
        raw.flush()
        return
    name = os.fspath(path)
    target = os.path.realpath(name)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise _oserror(err, name) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "is a folder, not a file", name)
    if st is not None and not stat.S_ISREG(st.st_mode):    # FIFO, device: written through
        try:
            f = open(target, "wb")
        except OSError as err:
            raise _oserror(err, name) from None
        with f:
            yield f
        return
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=folder)
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise FileNotFoundError(2, "its folder does not exist", name) from None
        raise _oserror(err, name) from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
            os.replace(tmp, target)
        except OSError as err:
            raise _oserror(err, name) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:   # the rename itself made durable (no folder handles on Windows)
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
