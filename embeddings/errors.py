from qa.errors import QAError


class ModelError(QAError):
    """The embedding model cannot be had; the message names the fix."""

    status = 503
