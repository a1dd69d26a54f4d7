"""Domain errors. Each carries a message a person can act on; the CLI prints it
as one line and the HTTP layer turns it into a JSON 4xx."""


class QAError(Exception):
    """Base of all expected failures."""

    status = 400


class NotFound(QAError):
    status = 404


class NotReady(QAError):
    status = 503


class DiskFull(QAError):
    """No space left for a write; nothing partial was left behind."""

    status = 507


class ReadOnly(QAError):
    """A write sent to a read replica (QA_REPLICA=1): the writer takes uploads."""

    status = 409
