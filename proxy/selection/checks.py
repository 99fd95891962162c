"""The checks a request itself carries, which a candidate answer must pass to be selected.

``RequestChecks.build(messages, params)`` reads, once per request:

- a forced tool call (``tool_choice: "required"`` or a named function): the answer must be a
  call of an allowed function whose arguments parse as a JSON object valid against that
  function's ``parameters`` schema. The answer is then the call, so no other check applies;
- else a ``response_format``: ``json_object``, the answer parses as a JSON object;
  ``json_schema``, it parses and is valid against the schema (``jsonschema``, the schema's own
  draft, Draft 2020-12 when it names none; a schema that is not valid JSON Schema is checked
  for parsing only);
- and, unless ``code`` is false (operators who will not run model-written code), the code
  examples the last user message and the system messages state (``examples.py``), run on the
  answer's code in the graders' sandbox (``code_check.py``).

``empty`` is true when the request carries none of these: selection then has nothing to go by.
``await checks.run(candidate)`` returns a ``CheckResult``; it never raises for anything the
candidate holds. The cheap checks run first; when one fails, the code is not run. Code runs
share one time limit per request, ``time_limit_s``, counted from the first run on the given
``clock``; each run also stops after ``run_timeout_s``, and a run that would start with the
limit spent fails unrun. Runs may be awaited side by side (each is a sandbox process); a
cancelled run leaves its sandbox to end by its own timeout. Nothing here logs, and no reason
quotes the prompt, the code or the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.backends.base import Completion, Message, SamplingParams
from proxy.backends.tool_calls import ToolUse

from .code_check import run_examples
from .examples import CodeExamples, extract_examples

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How a candidate fared: ``ran`` checks counted (each code example one; an example the
    run did not reach, or that the time limit left unrun, counts as run and failed),
    ``failed`` of them, ``passed`` when at least one ran and none failed, and ``reason`` in a
    few words."""

    passed: bool
    ran: int
    failed: int
    reason: str


class _JsonCheck:
    """A JSON text's check: it parses; to an object if ``object_only``; valid against
    ``schema`` when one is given and is valid JSON Schema."""

    def __init__(self, schema: Any, *, object_only: bool) -> None:
        self._object_only = object_only
        self._validator = _compiled(schema) if isinstance(schema, Mapping) else None

    def problem(self, text: str) -> str | None:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return "not JSON"
        if self._object_only and not isinstance(value, dict):
            return "not a JSON object"
        if self._validator is None:
            return None
        from jsonschema.exceptions import best_match

        try:
            error = best_match(self._validator.iter_errors(value))
        except (RecursionError, ValueError, TypeError, LookupError):
            return None  # a schema the validator cannot apply: parsing is all there is to check
        return None if error is None else f"fails the schema ({error.validator})"


class RequestChecks:
    """One request's checks (see the module docstring); made by ``RequestChecks.build``."""

    def __init__(
        self,
        *,
        tool_arguments: Mapping[str, _JsonCheck] | None,
        answer_format: _JsonCheck | None,
        examples: CodeExamples,
        time_limit_s: float,
        run_timeout_s: float,
        clock: Clock,
    ) -> None:
        self._tool_arguments = tool_arguments
        self._answer_format = answer_format
        self.examples = examples
        self._time_limit_s = time_limit_s
        self._run_timeout_s = run_timeout_s
        self._clock = clock
        self._first_run: float | None = None

    @classmethod
    def build(
        cls,
        messages: Sequence[Message],
        params: SamplingParams,
        *,
        code: bool = True,
        time_limit_s: float = 20.0,
        run_timeout_s: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> RequestChecks:
        """The checks of a request whose wire layer already validated ``params`` (tools,
        ``tool_choice``, the ``response_format`` schema's bounds)."""
        tools = ToolUse.from_params(params)
        forced = tools is not None and tools.forced
        tool_arguments = None
        if tools is not None and forced:
            allowed = list(tools.functions) if tools.choice == "required" else [tools.choice]
            tool_arguments = {
                name: _JsonCheck(tools.functions[name], object_only=True) for name in allowed
            }
        return cls(
            tool_arguments=tool_arguments,
            answer_format=None if forced else _answer_format(params.response_format),
            examples=(
                extract_examples(_stated(messages)) if code and not forced else CodeExamples()
            ),
            time_limit_s=time_limit_s,
            run_timeout_s=run_timeout_s,
            clock=clock,
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        """Which checks the request carries: ``tool_call``, ``response_format``, ``code``."""
        present = (
            ("tool_call", self._tool_arguments is not None),
            ("response_format", self._answer_format is not None),
            ("code", self.examples.count > 0),
        )
        return tuple(name for name, here in present if here)

    @property
    def empty(self) -> bool:
        return not self.kinds

    async def run(self, candidate: Completion | str) -> CheckResult:
        """Check one candidate answer (a backend's ``Completion``, or the answer text)."""
        if self.empty:
            return CheckResult(False, 0, 0, "the request carries no check")
        text, calls = (
            (candidate, ())
            if isinstance(candidate, str)
            else (candidate.text, candidate.tool_calls)
        )
        ran = 0
        if self._tool_arguments is not None:
            problem = _call_problem(calls, self._tool_arguments)
            if problem is not None:
                return CheckResult(False, 1, 1, problem)
            ran += 1
        if self._answer_format is not None:
            problem = self._answer_format.problem(text)
            if problem is not None:
                return CheckResult(False, ran + 1, 1, problem)
            ran += 1
        if not self.examples.count:
            return CheckResult(True, ran, 0, "passed")
        return await self._run_code(text, ran)

    async def _run_code(self, answer: str, ran: int) -> CheckResult:
        now = self._clock()
        if self._first_run is None:
            self._first_run = now
        left = self._first_run + self._time_limit_s - now
        total = self.examples.count
        if left <= 0:
            return CheckResult(False, ran + total, total, "the time for running code is spent")
        outcome = await asyncio.to_thread(
            run_examples, self.examples, answer, timeout_s=min(self._run_timeout_s, left)
        )
        return CheckResult(
            outcome.failed == 0, ran + outcome.ran, outcome.failed, f"code: {outcome.reason}"
        )


def _answer_format(response_format: Mapping[str, Any] | None) -> _JsonCheck | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return _JsonCheck(None, object_only=True)
    if kind == "json_schema":
        assert response_format is not None
        schema = (response_format.get("json_schema") or {}).get("schema")
        return _JsonCheck(schema, object_only=False)
    return None


def _stated(messages: Sequence[Message]) -> list[str]:
    """The text of the system (and developer) messages and of the last user message."""
    texts = [_text(m) for m in messages if m.get("role") in ("system", "developer")]
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        texts.append(_text(users[-1]))
    return texts


def _text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and "text" in p
        )
    return content if isinstance(content, str) else ""


def _call_problem(
    calls: Sequence[Mapping[str, Any]], allowed: Mapping[str, _JsonCheck]
) -> str | None:
    if not calls:
        return "no tool call"
    for call in calls:
        function = call.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        check = allowed.get(name) if isinstance(name, str) else None
        if check is None or not isinstance(function, Mapping):
            return "a call of a function the request does not allow"
        arguments = function.get("arguments")
        problem = check.problem(arguments) if isinstance(arguments, str) else "not a JSON string"
        if problem is not None:
            return f"tool arguments: {problem}"
    return None


def _compiled(schema: Mapping[str, Any]) -> Any:
    """A validator for ``schema``, or None when it is not valid JSON Schema."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except (jsonschema.exceptions.SchemaError, RecursionError):
        return None
    return cls(schema)
