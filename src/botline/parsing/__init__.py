"""Parsing untrusted documents in worker processes, with time, page, size and output caps.

`WorkerPool` runs a job in a separate process (killed and replaced past its time limit);
`PdfExtractor` is the first job kind. Knowledge ingestion adds its formats here the same way:
a module-level job function that enforces its own caps, and a small async front for callers.
"""

from botline.parsing.errors import (
    JobFailed,
    JobRejected,
    JobTimedOut,
    ParsingError,
    PoolBusy,
    PoolClosed,
    WorkerCrashed,
)
from botline.parsing.pdf import PdfExtractor, PdfLimits, PdfText
from botline.parsing.pool import PoolLimits, WorkerPool

__all__ = [
    "JobFailed", "JobRejected", "JobTimedOut", "ParsingError", "PdfExtractor", "PdfLimits", "PdfText", "PoolBusy",
    "PoolClosed", "PoolLimits", "WorkerCrashed", "WorkerPool",
]
