"""tfenv's one error policy.

Every error the library raises on purpose is a :class:`TfenvError`: its
message says what is wrong and what to do, and the CLI prints it as it is
(no traceback). Library code never raises ``SystemExit``; only the CLI exits.
"""

from __future__ import annotations


class TfenvError(Exception):
    """An expected failure with a message meant for the operator."""
