"""The one exception type for a user's mistake.

A `UsageError` means "the caller asked for something invalid or absent" (a bad flag, a size that
does not fit, a peer that is not installed). The command-line scripts turn it, and only it, into
one `error:` line and exit status 2; any other exception is a bug and keeps its traceback.
It subclasses `ValueError` so that code catching `ValueError` keeps working.
"""


class UsageError(ValueError):
  """A user's mistake, with a one-line message naming the bad value and what is allowed."""
