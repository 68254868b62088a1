"""The one exception type that means "the user's input is wrong"."""


class UserError(Exception):
    """A problem in the user's config or data, not a bug in tinysweep.

    The message is one line that names the key, value or file and says what is
    expected, e.g. ``train.lr: must be > 0, got -1``. The CLI prints it and exits 2.
    """
