"""The exception types that are not bugs: the user's input is wrong, or a file could not be
written; and the check of a mapping's keys that every config section shares."""

import difflib
import re


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


def _suggest(word, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_keys(mapping: dict, allowed, where: str) -> None:
    """Refuses the first key of ``mapping`` not in ``allowed``, suggesting the nearest name."""
    for key in mapping:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            shown = key if re.fullmatch(r"[\w.-]+", str(key)) else repr(key)
            raise UserError(f"{prefix}{shown}: unknown key{_suggest(key, allowed)}")
