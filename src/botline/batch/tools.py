"""A workflow's `enabledTools`: the built-in (Sentinel) functions its items may use.

The seed's `enabledTools` is `{enabledFunctions, options}`, the same pair as a gateway's
`sentinelOptions.enabledFunctions` and `builtinFunctionsOptions`. When a workflow sets it, its items
run on the gateway with those two replaced: the workflow's list is the whole set of built-in
functions offered (the gateway's own list no longer counts), while the gateway's other tools
(protocol functions, MCP sources, skills, knowledge) apply as on any turn. Unset, the gateway's own
built-in functions apply.

Only functions botline runs can be enabled: a name it has no tool for is refused when the workflow
is saved, rather than accepted and silently absent from every item's run.
"""

from __future__ import annotations

from collections.abc import Iterable

from botline.domain.batch import EnabledTools
from botline.domain.gateways import Gateway, SentinelFunction, SentinelOptions

AVAILABLE = (SentinelFunction.REMEMBER, SentinelFunction.CALENDAR)
"""The built-in functions a batch item can use (memory_* and calendar_*, keyed to the job's user
`batch:{jobId}`). Handoff needs a person in a conversation; the others have no tool in botline."""


def unavailable(functions: Iterable[SentinelFunction]) -> list[str]:
    """The names in `functions` that batch items cannot use, in the order given, once each."""
    return list(dict.fromkeys(f.value for f in functions if f not in AVAILABLE))


def refusal(functions: Iterable[SentinelFunction]) -> str | None:
    """Why `enabledFunctions` cannot be saved (None when it can)."""
    missing = unavailable(functions)
    if not missing:
        return None
    return (f"Invalid value for options.enabledTools.enabledFunctions: {', '.join(missing)} cannot run in batch "
            f"items (available: {', '.join(f.value for f in AVAILABLE)}).")


def for_items(gateway: Gateway, enabled: EnabledTools | None) -> Gateway:
    """The gateway the workflow's items run on: its built-in functions replaced by `enabled` when set."""
    if enabled is None:
        return gateway
    functions = [f for f in enabled.enabled_functions if f in AVAILABLE]
    parameters = gateway.parameters.model_copy(update={
        "sentinel_options": SentinelOptions(enabled_functions=functions),
        "builtin_functions_options": enabled.options or gateway.parameters.builtin_functions_options,
    })
    return gateway.model_copy(update={"parameters": parameters})
