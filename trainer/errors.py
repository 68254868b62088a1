"""The exception types that are not bugs: the user's input is wrong, or a file could not be
written."""


class UserError(Exception):
    """A problem in the user's config or data, not a bug in tinysweep.

    The message is one line that names the key, value or file and says what is
    expected, e.g. ``train.lr: must be > 0, got -1``. The CLI prints it and exits 2.
    """


class WriteError(OSError):
    """A result file could not be written (a full disk, a file-size limit, a read-only
    file system): ``str()`` is one line naming the file and the OS's reason. The CLI prints
    it and exits 1; the files and chunks already written stay, no temporary file does."""

    def __init__(self, path, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"

    def __reduce__(self):                    # pickled from a child process (report.py)
        return (_write_error, (self.filename, self.errno, self.strerror))


def _write_error(path, errno: int, strerror: str) -> WriteError:
    return WriteError(path, OSError(errno, strerror))
