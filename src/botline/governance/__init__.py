"""Governance that enters a turn: AI policies checked by a judge model (docs/governance.md)."""

from botline.governance.guard import PolicyGuard
from botline.governance.policy_cache import PolicyCache

__all__ = ["PolicyCache", "PolicyGuard"]
