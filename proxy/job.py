"""What the pipeline serves, whichever endpoint asked for it.

The chat endpoint, the Responses API and text completions each parse their own wire format
(``proxy.protocol``, ``proxy.responses``, ``proxy.completions``); the pipeline sees only a
``Job``: the conversation as backends take it, the generation settings (the request's tools
among them), how many choices, and whether the one message is raw text to continue. So the
pipeline, refinement and selection depend on no wire format, and a new endpoint needs no change
below its own parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.backends.base import Message, SamplingParams


@dataclass(frozen=True, slots=True)
class Job:
    """``messages`` as backends take them; ``params`` the settings asked for, tools included;
    ``n`` choices; ``raw``: the one message is a prompt to continue as it is
    (``/v1/completions``), never refined."""

    messages: tuple[Message, ...]
    params: SamplingParams
    n: int = 1
    raw: bool = False

    def sampling(self, *, offer_tools: bool) -> SamplingParams:
        """The settings for one call: without the request's tools when the answering model is
        not offered them (a policy may answer optional tools in text)."""
        if offer_tools or self.params.tools is None:
            return self.params
        return self.params.replace(tools=None, tool_choice=None, parallel_tool_calls=None)
