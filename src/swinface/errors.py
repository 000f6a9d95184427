"""The base of the errors swinface raises for bad input, so callers can catch them all."""


class SwinFaceError(Exception):
    """A problem with the user's input or files, with a message that names it."""
