"""The assessment a specialist returns; shared with the judge core, which only reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assessment:
    """One specialist's output on one input: a number and/or a text, with the specialist's version."""

    code: str
    value: float | None = None
    text: str | None = None
    version: str = ""
    #: which candidate (1 or 2) it describes; None for one-candidate tasks
    candidate: int | None = None
    #: why the specialist failed on this input (``"<reason>: <detail>"``, reason one of ``FAILURE_REASONS``);
    #: None for an assessment. A failure carries no value or text, is never cached, and the judge's prompt
    #: says the assessment is missing
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the specialist failed on this input (no value, no text: ``error`` says why)."""
        return self.error is not None


#: why a specialist failed on one input: its image does not decode, the model raised, a served specialist's
#: server failed for good (after the runner's retries), or its answer could not be read
FAILURE_REASONS: tuple[str, ...] = ("input_error", "model_error", "api_error", "parse_failure")
