"""Atomic writes: a reader sees the old file (or nothing) or the complete new one, never a partial write.

A path through a symlink writes the file the link points to (the link stays); a character device or FIFO
(/dev/null, a pipe to another program) cannot be replaced by a rename, so it is written directly; a block
device, socket or directory is refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator, TextIO

from .errors import UserError


@contextmanager
def _closing(f, path) -> Iterator:
    """Yield `f`, then close it: a close that fails (a full disk shows there) is a UserError; when the block
    failed already, its error is the one that counts."""
    try:
        yield f
    except BaseException:
        with suppress(OSError):
            f.close()
        raise
    try:
        f.close()
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None


@contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[TextIO]:
    """Open a file for writing (text, or bytes with `binary`) that appears at `path` only when the block
    completes without error (a character device or FIFO is written directly, see above)."""
    target = Path(os.path.realpath(path))  # renaming onto a symlink would replace the link itself
    mode = target.stat().st_mode if target.exists() else stat.S_IFREG
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        try:
            f = open(target, "wb" if binary else "w", **({} if binary else {"newline": ""}))
        except OSError as e:
            raise UserError(f"{path}: cannot write ({e.strerror})") from None
        with _closing(f, path):
            yield f
        return
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: not a regular file, character device or FIFO; refusing to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with _closing(os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline=""), path) as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def check_writable(path: str | Path, overwrite: bool = True) -> None:
    """Refuse, before any work, an output that could not be written when the work is done: an existing one
    without `overwrite`, or one whose nearest existing parent is not a directory this process can write in (a
    probe directory is made there and removed; the missing parents are made only by the write itself)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists (pass --overwrite to replace it)")
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{path}: cannot write ({parent} is not a directory)")
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".edgekit-probe."))
    except OSError as e:
        raise UserError(f"{path}: cannot write in {parent} ({e.strerror})") from None


def check_not_an_input(out: str | Path, *inputs: str | Path) -> None:
    """Refuse an output that is one of the inputs, or a file of an input directory (where it would replace a
    recording, or be read as one next time; input directories are read without their subdirectories)."""
    target = Path(os.path.realpath(out))
    for source in inputs:
        src = Path(os.path.realpath(source))
        if target == src or target.parent == src:
            where = "is" if target == src else "is a file of"
            raise UserError(f"{out}: {where} the input {source}; write the output elsewhere")


@contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` only when the block completes without error."""
    path = Path(path)
    check_writable(path, overwrite)
    try:  # the parent may still vanish or refuse in between
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
