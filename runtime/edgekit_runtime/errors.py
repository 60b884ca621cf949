"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """A problem with the user's input, files or options.

    The CLI prints its message as a single line and exits non-zero; it never shows a traceback for it.
    """
