"""Why an index version is not served (its own module: artifacts, lexical and sync all raise it)."""


class IndexRejected(Exception):
    """This index version must not be served; the message says what is wrong and what to do."""
