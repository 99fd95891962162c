"""The policy schema: pydantic v2 models, strict (no coercion), unknown keys rejected, frozen.
README.md ("Routing policies") describes every field.

Field rules live on the models; rules spanning fields or sections (unique model ids, declared
tasks, reserved names, pricing, ``api_base`` per backend) live in ``routing.policy_checks`` and
run in the validators here, or in ``routing.policy_loader`` when loading a file, which reports
every problem with its file and line. ``Policy.index`` holds what planning needs, precomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from routing.backend_options import (
    BACKENDS,
    BackendOptions,
    Capability,
    LiteLLMOptions,
    LlamaCppOptions,
    OpenAIOptions,
)
from routing.cost import MTOK, Prices
from routing.errors import UnknownModel
from routing.policy_checks import cross_check, model_checks
from routing.policy_types import (
    Count,
    Name,
    NonNegative,
    PolicyModel,
    Positive,
    PositiveCount,
    QualityList,
    Text,
    Url,
    as_tuple,
    one_or_many,
)
from routing.techniques import SamplingDefaults, Selection, Technique, TechniqueQuality

__all__ = [
    "Admin",
    "Alias",
    "BackendOptions",
    "Hardware",
    "LiteLLMOptions",
    "LlamaCppOptions",
    "ModelSpec",
    "OpenAIOptions",
    "Policy",
    "ReferenceModel",
    "Refinement",
    "SamplingDefaults",
    "Selection",
    "Server",
    "Task",
    "TechniqueQuality",
    "Weights",
]

SKIP_CROSS_CHECKS = "perfics_skip_cross_checks"
"""Validation context key: the loader runs the cross checks itself, to give their lines."""

NESTED_ERRORS = "perfics_nested"
"""Custom error type whose ``ctx["errors"]`` lists ``NestedError`` below its location."""

NestedError = tuple[tuple[str | int, ...], str, str, object, dict[str, Any] | None]
"""``(loc, type, message, input, ctx)`` of an error below a field, as pydantic reports them."""


class Weights(PolicyModel):
    """PeRFICS weights: ``performance`` (on Q_r/10), ``refinement`` (on the relative gain over
    Q_0) and ``cost`` (on log10 of the cost over ``cost_reference_usd``)."""

    performance: NonNegative = 1.0
    refinement: NonNegative = 0.5
    cost: NonNegative = 0.05


class ReferenceModel(PolicyModel):
    """The model whose prices make ``x-perfics-reference-cost-usd``. Prices are given both or
    neither (then the proxy looks them up in litellm's local cost map, if installed)."""

    id: Name
    input_usd_per_mtok: NonNegative | None = None
    output_usd_per_mtok: NonNegative | None = None

    @model_validator(mode="after")
    def _prices_together(self) -> Self:
        if (self.input_usd_per_mtok is None) != (self.output_usd_per_mtok is None):
            missing = "input" if self.input_usd_per_mtok is None else "output"
            raise _nested_error([((f"{missing}_usd_per_mtok",), "value_error", _PAIR, None, None)])
        return self


_PAIR = "input_usd_per_mtok and output_usd_per_mtok go together"

DEFAULT_CRITIQUE_PROMPT = (
    "Review your previous answer to this conversation critically. List the concrete problems "
    "in it: errors of fact or reasoning, parts of the request left unanswered, unclear or "
    "badly organised passages, and anything that does not follow the instructions. Be specific "
    "and brief, and do not rewrite the answer. If nothing needs improving, reply with exactly "
    "{stop_phrase} and nothing else."
)
DEFAULT_REWRITE_PROMPT = (
    "Now write the complete improved answer to the conversation, fixing every problem you "
    "listed. Reply with the answer only: no preamble, no notes, and no mention of the review."
)


class Refinement(PolicyModel):
    """The untargeted, domain-agnostic refinement prompts, their token budget and the rule a
    rewrite must pass to replace the answer in hand (``accept``: ``all`` | ``answers`` |
    ``likelier``, described in ``proxy.acceptance``). ``critique_prompt`` must contain
    ``{stop_phrase}`` (substituted with ``str.format``) and no other placeholder. Prompt and
    answer text are logged only when ``log_content`` is true."""

    critique_prompt: Text = DEFAULT_CRITIQUE_PROMPT
    rewrite_prompt: Text = DEFAULT_REWRITE_PROMPT
    critique_max_tokens: PositiveCount = 256
    template_tokens: Count = 64
    stop_phrase: Text = "NO ISSUES"
    accept: Literal["all", "answers", "likelier"] = "answers"
    log_content: bool = False

    @field_validator("critique_prompt")
    @classmethod
    def _has_stop_phrase(cls, prompt: str) -> str:
        if "{stop_phrase}" not in prompt:
            raise ValueError("must contain the placeholder {stop_phrase}")
        try:
            prompt.format(stop_phrase="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                "may hold no placeholder but {stop_phrase} (write literal braces as {{ }})"
            ) from exc
        return prompt


class Task(PolicyModel):
    """A task category: its cap on refinement rounds, its cap on samples to select from
    (``max_samples``: 1, the default, plans no ``best_of`` or ``vote``), its expected answer
    length (``a``) and the classifier's keywords (whole words or phrases, case-insensitive)."""

    max_rounds: Count
    max_samples: PositiveCount = 1
    answer_tokens: PositiveCount
    keywords: Annotated[tuple[Text, ...], BeforeValidator(as_tuple)] = ()


class Alias(PolicyModel):
    """A ``model`` name clients may send (``gpt-4o``) and what it declares."""

    task: Name | None = None
    budget_usd: NonNegative | None = None
    max_rounds: Count | None = None
    max_samples: Count | None = None


class Hardware(PolicyModel):
    """What serving costs: ``usd_per_hour`` for the hardware, and its measured throughput."""

    usd_per_hour: NonNegative
    prefill_tokens_per_s: Positive
    decode_tokens_per_s: Positive


def _known_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; known: {', '.join(BACKENDS)}")
    return name


class ModelSpec(PolicyModel):
    """One catalog model. Priced directly (``input_usd_per_mtok`` and ``output_usd_per_mtok``)
    or through ``hardware``; a policy requires one (a ``ModelSpec`` built alone may have
    neither, and then ``prices()`` raises ``ValueError``). ``quality`` maps task names or
    ``default`` to Q_0, Q_1, ... on a 0-10 scale, or to a ``TechniqueQuality`` mapping
    (``{refine: [Q_0, ...], best_of: {k: Q}, vote: {k: Q}}``). ``capabilities`` lists what the
    model can serve (None: its backend's defaults). ``options`` are validated by ``backend``;
    ``defaults`` are the sampling fields applied when a request sends none (those its backend
    can apply: ``routing.backend_options.BACKENDS``)."""

    id: Name
    backend: Annotated[str, AfterValidator(_known_backend)]
    model: Text
    api_base: Annotated[
        Annotated[tuple[Url, ...], Field(min_length=1)] | None, BeforeValidator(one_or_many)
    ] = None
    api_key_env: Name | None = None
    context_window: PositiveCount
    input_usd_per_mtok: NonNegative | None = None
    output_usd_per_mtok: NonNegative | None = None
    hardware: Hardware | None = None
    quality: dict[str, QualityList | TechniqueQuality] = Field(default_factory=dict)
    capabilities: Annotated[tuple[Capability, ...] | None, BeforeValidator(as_tuple)] = None
    options: BackendOptions = Field(default=None, validate_default=True)
    defaults: SamplingDefaults = SamplingDefaults()

    @field_validator("quality", mode="before")
    @classmethod
    def _quality_entries(cls, value: object) -> object:
        # Each entry is validated as the one form its shape says (a mapping: techniques; else
        # a list), so a problem is reported at its own path rather than once per form.
        if not isinstance(value, Mapping):
            return value
        entries: dict[object, object] = {}
        errors: list[NestedError] = []
        for key, entry in value.items():
            adapter = _TECHNIQUE_QUALITY if isinstance(entry, Mapping) else _QUALITY_LIST
            try:
                entries[key] = adapter.validate_python(entry, strict=True)
            except ValidationError as exc:
                errors.extend(
                    (
                        (key, *(part for part in e["loc"] if part != "[key]")),
                        e["type"],
                        e["msg"],
                        e.get("input"),
                        e.get("ctx"),
                    )
                    for e in exc.errors(include_url=False)
                )
        if errors:
            raise _nested_error(errors)
        return entries

    @field_validator("options", mode="before")
    @classmethod
    def _options_for_backend(cls, value: object, info: ValidationInfo) -> object:
        backend = info.data.get("backend")
        if backend not in BACKENDS:
            return LlamaCppOptions()  # placeholder: the invalid backend is reported itself
        expected = BACKENDS[backend].options
        if value is None:
            return expected()
        if isinstance(value, BaseModel):
            if not isinstance(value, expected):
                raise ValueError(f"backend {backend} takes {expected.__name__}")
            return value
        try:
            return expected.model_validate(value)
        except ValidationError as exc:
            raise _nested_error(
                [
                    (tuple(e["loc"]), e["type"], e["msg"], e.get("input"), e.get("ctx"))
                    for e in exc.errors(include_url=False)
                ]
            ) from exc

    @model_validator(mode="after")
    def _backend_and_pricing(self, info: ValidationInfo) -> Self:
        if info.context and info.context.get(SKIP_CROSS_CHECKS):
            return self
        problems = model_checks(self.model_dump())
        if problems:
            raise _nested_error([(loc, "value_error", text, None, None) for loc, text in problems])
        return self

    def prices(self) -> Prices:
        """USD per million tokens: as given, or ``usd_per_hour / 3600 / tokens_per_s * 1e6``
        (prefill throughput for input, decode for output)."""
        if self.input_usd_per_mtok is not None and self.output_usd_per_mtok is not None:
            return Prices(self.input_usd_per_mtok, self.output_usd_per_mtok)
        if self.hardware is not None:
            per_second = self.hardware.usd_per_hour / 3600
            return Prices(
                per_second / self.hardware.prefill_tokens_per_s * MTOK,
                per_second / self.hardware.decode_tokens_per_s * MTOK,
            )
        raise ValueError(f"model {self.id} has no pricing")

    def capability_set(self) -> frozenset[str]:
        """``capabilities`` as listed, or the backend's defaults
        (``routing.backend_options.BACKENDS``)."""
        listed = self.capabilities
        return frozenset(listed if listed is not None else BACKENDS[self.backend].capabilities)

    def quality_for(self, task: str) -> tuple[float, ...] | None:
        """Q_0, Q_1, ... for ``task`` (a ``TechniqueQuality``'s ``refine``): its own entry,
        else ``default``, else None (the model is not eligible for the task)."""
        found = self._entry(task)
        return found.refine if isinstance(found, TechniqueQuality) else found

    def sampled_quality(self, task: str) -> tuple[tuple[Technique, int, float], ...]:
        """``(technique, k, Q)`` for every ``best_of`` and ``vote`` size the entry serving
        ``task`` lists (``TechniqueQuality.sampled``); empty for a plain list."""
        found = self._entry(task)
        return found.sampled() if isinstance(found, TechniqueQuality) else ()

    def _entry(self, task: str) -> tuple[float, ...] | TechniqueQuality | None:
        found = self.quality.get(task)
        return found if found is not None else self.quality.get("default")


class Admin(PolicyModel):
    """``/admin/*``: the environment variable holding the admin key (loopback only without)."""

    api_key_env: Name | None = None


class Server(PolicyModel):
    """Serving: the environment variable holding the clients' API key, the queue size, and the
    limits every connection and request is held to. ``max_body_bytes`` and ``body_timeout_s``
    apply from the next request after a reload; ``header_timeout_s``, ``max_connections`` and
    the store's fields are read when ``perfics serve`` starts.

    ``database``: the key and ledger store (``sqlite:///PATH`` or ``postgresql://...``;
    ``PERFICS_DATABASE_URL`` wins). ``lease_ttl_s``: how long what a process holds of
    a key's budget outlives its last renewal (every ledger batch) before it is charged as
    spent: a process that died stops renewing.
    ``ledger_interval_s``: how often ledger rows are written (a crash loses at most that).
    ``key_cache_s``: how long a process trusts a key it looked up, so a key revoked, rotated
    or changed elsewhere (another process, the CLI) keeps its old standing at most this long
    there (0: every request reads the store). ``lease_idle_s``: what a lease holds of a key's
    budget and has not used for this long goes back to the store with the next ledger batch.
    ``ledger_retention_days``: ledger rows older than this are deleted.
    ``responses_retention_days``: stored responses (the Responses API's ``store: true``, what
    ``previous_response_id`` continues) older than this are deleted. ``store_responses``
    false: no response is ever stored (they hold the conversation's text), whatever a request
    asks, and ``previous_response_id`` is refused."""

    api_key_env: Name | None = None
    queue_size: PositiveCount = 16
    max_body_bytes: PositiveCount = 4 * 1024 * 1024
    body_timeout_s: Positive = 30.0
    header_timeout_s: Positive = 10.0
    max_connections: PositiveCount = 512
    database: str | None = None
    lease_ttl_s: Positive = 60.0
    ledger_interval_s: Positive = 1.0
    key_cache_s: NonNegative = 1.0
    lease_idle_s: NonNegative = 1.0
    ledger_retention_days: Positive = 90.0
    responses_retention_days: Positive = 30.0
    store_responses: bool = True


class Tools(PolicyModel):
    """Tools a request sends with ``tool_choice`` ``auto``, ``none`` or absent, which the model
    may decline. Models that can call tools rank first; a model that cannot (no ``tools``
    capability), or whose context cannot hold the tools, is still a candidate and answers in
    text without seeing them (``x-perfics-tools: not-offered``) when ``unsupported`` is
    ``answer_in_text``. ``refuse`` makes such a request need tools, as a ``required`` or named
    ``tool_choice`` always does (400 naming ``tools`` when no model can serve them)."""

    unsupported: Literal["answer_in_text", "refuse"] = "answer_in_text"


class Policy(PolicyModel):
    """A routing policy. ``load_policy`` / ``parse_policy`` raise ``PolicyError`` listing every
    problem with its line; ``Policy.model_validate`` raises pydantic's ``ValidationError``."""

    version: Literal[1]
    default_task: Name
    weights: Weights = Weights()
    cost_reference_usd: Positive = 0.001
    reference_model: ReferenceModel | None = None
    refinement: Refinement = Refinement()
    selection: Selection = Selection()
    tasks: Annotated[dict[Name, Task], Field(min_length=1)]
    aliases: dict[Name, Alias] = Field(default_factory=dict)
    models: Annotated[tuple[ModelSpec, ...], BeforeValidator(as_tuple), Field(min_length=1)]
    tools: Tools = Tools()
    admin: Admin = Admin()
    server: Server = Server()

    # Planning data (``routing.policy_index.index_of``), built once per loaded policy.
    _index: object = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_sections(self, info: ValidationInfo) -> Self:
        if info.context and info.context.get(SKIP_CROSS_CHECKS):
            return self
        problems = cross_check(self.model_dump())
        if problems:
            raise _nested_error([(loc, "value_error", text, None, None) for loc, text in problems])
        return self

    def model(self, model_id: str) -> ModelSpec:
        """The catalog model ``model_id``; raises ``UnknownModel``."""
        spec = next((spec for spec in self.models if spec.id == model_id), None)
        if spec is None:
            raise UnknownModel(model_id)
        return spec


_QUALITY_LIST: TypeAdapter[tuple[float, ...]] = TypeAdapter(QualityList)
_TECHNIQUE_QUALITY = TypeAdapter(TechniqueQuality)


def _nested_error(errors: list[NestedError]) -> PydanticCustomError:
    detail = "; ".join(f"{'.'.join(map(str, error[0]))}: {error[2]}" for error in errors)
    return PydanticCustomError(NESTED_ERRORS, "{detail}", {"detail": detail, "errors": errors})
