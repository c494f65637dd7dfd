"""The one exception type users see: a message that says what is wrong and how to fix it."""


class TransferkitError(Exception):
    """Raised for user-facing problems (bad data, bad options, missing weights).

    The CLI prints the message on one line without a traceback (unless ``--debug``).
    """
