"""What a batch status word means, and where a status object keeps its error text.

Alida documents the words ``pending | running | succeeded | failed``
(``docs/api.md`` §3.2), but its sibling event-log export answers
``"Succeeded"`` and ``"errormessage"`` (§12b), and nothing says which other
words a batch can show. So words are compared after normalising case and
separators, mapped by vocabulary to a small set of states, and a word the tap
has never seen is treated as "still waiting" (with a warning naming it) rather
than as an error: an unknown word that later becomes ``succeeded`` costs nothing,
and one that never does hits the wait limits, whose error names the word.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any


class BatchState(enum.Enum):
    PENDING = "pending"  # accepted, not started: 'max_wait_to_start_seconds' applies
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a new batch may succeed: the tap creates one
    CANCELLED = "cancelled"  # someone or something ended it: terminal, not re-created
    UNKNOWN = "unknown"  # a word not in the vocabulary: waited on like PENDING

    @property
    def waiting(self) -> bool:
        return self in (BatchState.PENDING, BatchState.RUNNING, BatchState.UNKNOWN)


_VOCABULARY: dict[BatchState, tuple[str, ...]] = {
    BatchState.PENDING: (
        "pending",
        "queued",
        "created",
        "submitted",
        "new",
        "waiting",
        "notstarted",
        "scheduled",
        "accepted",
    ),
    BatchState.RUNNING: (
        "running",
        "processing",
        "inprogress",
        "started",
        "active",
        "executing",
        "generating",
    ),
    BatchState.SUCCEEDED: (
        "succeeded",
        "success",
        "successful",
        "completed",
        "complete",
        "done",
        "finished",
        "ready",
    ),
    BatchState.FAILED: ("failed", "failure", "error", "errored", "faulted"),
    BatchState.CANCELLED: (
        "cancelled",
        "canceled",
        "cancel",
        "aborted",
        "expired",
        "deleted",
        "stopped",
        "terminated",
        "revoked",
    ),
}
_STATES = {word: state for state, words in _VOCABULARY.items() for word in words}
_SEPARATORS = re.compile(r"[\s_\-]+")

# Keys that may hold a failed batch's reason, in order of preference (compared
# lower-case, so errorMessage and errormessage are one key). ``message`` is also
# the object that carries ``artifact`` (§3.2): only text is taken from it.
_ERROR_KEYS = ("errormessage", "error_message", "error", "message", "errordetail", "detail", "reason")
_MESSAGE_KEYS = ("message", "errormessage", "error_message", "detail", "description", "text", "reason")


def normalise(word: Any) -> str:
    """``' In_Progress '`` → ``'inprogress'``: case and separators do not matter."""
    return _SEPARATORS.sub("", str(word).strip().lower())


def classify(word: Any) -> BatchState:
    """The state a status word stands for. No word at all counts as pending:
    a create answer may carry no status yet (§2)."""
    if word is None or not str(word).strip():
        return BatchState.PENDING
    return _STATES.get(normalise(word), BatchState.UNKNOWN)


def status_word(status: Mapping[str, Any]) -> str:
    """The raw status word of a status object, for messages ('' when absent)."""
    word = status.get("status")
    if word is None:  # same key under another case ("Status")
        word = next((v for k, v in status.items() if str(k).lower() == "status"), None)
    return "" if word is None else str(word).strip()


def error_text(status: Mapping[str, Any]) -> str | None:
    """The reason a status object gives for a failure, or None.

    Looks at ``errorMessage``/``errormessage``, ``error``, ``message`` (and a few
    synonyms), each either a string or an object with a message-like key.
    """
    by_key = {str(k).lower(): v for k, v in status.items()}
    for key in _ERROR_KEYS:
        text = _text(by_key.get(key))
        if text:
            return text
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Mapping):
        inner = {str(k).lower(): v for k, v in value.items()}
        for key in _MESSAGE_KEYS:
            if isinstance(inner.get(key), str) and inner[key].strip():
                return str(inner[key]).strip()
    return None
