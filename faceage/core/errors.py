"""The user-facing error: raised for bad input; the CLI prints its message (no traceback) and exits 2."""


class FaceageError(Exception):
    """A problem the user can fix; the message names the file and what to do."""
