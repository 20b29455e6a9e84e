"""The one egress layer: every outbound HTTP call botline makes on a tenant's behalf goes through it.

See docs/architecture.md ("Egress") for the guarantees: destination policy checked on the address
actually connected to (and on every redirect hop), response caps, timeouts, credentials stripped on
cross-origin redirects, and errors that never quote the URL.
"""

from botline.egress.client import Egress, EgressResponse
from botline.egress.errors import DestinationRefused, EgressError, EgressFailed, ResponseTooLarge
from botline.egress.policy import EgressPolicy, Trust

__all__ = [
    "DestinationRefused",
    "Egress",
    "EgressError",
    "EgressFailed",
    "EgressPolicy",
    "EgressResponse",
    "ResponseTooLarge",
    "Trust",
]
