"""The embedded backend: one in-process llama.cpp model.

One ``Llama`` per model, loaded once in ``start()``. llama.cpp is not re-entrant, so calls are
serialised by an asyncio lock taken *before* the worker thread starts; at most ``queue_size``
calls may wait for it, one more is refused with ``QueueFull`` (429). Generation runs token by
token in a worker thread that checks a stop flag between tokens: when the awaiting task is
cancelled, the flag is set and the lock is released only once the thread has stopped, so the
next request starts on a quiet model within a token or two.

The chat template is rendered here (not by ``create_chat_completion``) so that the exact prompt
token count, the prefix shared with the previous call (llama.cpp reuses its KV cache for it) and
the stop handling are ours to see.

``sample`` makes several answers in one llama.cpp batch (``llama_batch`` entries with sequence
ids; the prompt's cache shared through ``llama_memory_seq_cp``), so the context is made to hold
``MAX_SEQUENCES`` sequences in one unified KV cache of ``n_ctx`` cells (``_hold_sequences``).
Everything else runs on sequence 0, as with llama-cpp-python's own one-sequence context.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import math
import os
import random
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from proxy.errors import (
    BackendError,
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    QueueFull,
    UpstreamRejected,
)
from proxy.results import TokenLogprob, Usage
from routing.errors import overflow_message
from routing.policy import ModelSpec

from .base import (
    Completion,
    Delta,
    Embeddings,
    Likelihood,
    Message,
    SamplingParams,
    collect,
)
from .bundled import resolve_model_path
from .tool_calls import ToolUse, with_tools

if TYPE_CHECKING:
    from llama_cpp import Llama

    from . import BackendSettings

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

# Used when a GGUF carries no chat template, by the model's architecture. Gemma has no system
# role: system text is folded into the first user turn (``_fold_system``), as Google's own
# template does.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GEMMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<start_of_turn>model\n"
    "{% else %}<start_of_turn>user\n{% endif %}"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_TEMPLATES_BY_ARCHITECTURE = {"gemma": _GEMMA, "gemma2": _GEMMA, "gemma3": _GEMMA}
# ``options.chat_format`` overrides the GGUF's own template.
CHAT_FORMATS = {"chatml": _CHATML, "gemma": _GEMMA}
_REPEAT_PENALTY = 1.1
_DONE = object()
MAX_SEQUENCES = 16
"""The most sequences one context decodes side by side (the wire's bound on ``n``)."""
_ANY_CHAR = r'char ::= [^"\\] |'  # llama-cpp-python's JSON Schema strings
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'  # JSON's own (as in JSON_GBNF)
_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's "pick a seed at random": never a sequence's seed


class LlamaCppBackend:
    """A GGUF model run in-process through llama-cpp-python."""

    serial = True  # one llama.cpp context: calls are serialised by the lock

    @classmethod
    def from_policy(cls, spec: ModelSpec, settings: BackendSettings) -> LlamaCppBackend:
        return cls(spec, queue_size=settings.queue_size)

    def __init__(self, spec: ModelSpec, *, queue_size: int = 16) -> None:
        self.model_id = spec.id
        self._spec = spec
        self._queue_size = queue_size
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._llama: Llama | None = None
        self._render: Callable[[Sequence[Message], ToolUse | None], str] | None = None
        self._takes_tools = False
        self._stop_texts: tuple[str, ...] = ()
        self._default_seed: int | None = None
        self._embeds = "embeddings" in spec.capability_set()

    @property
    def ready(self) -> bool:
        return self._llama is not None

    @property
    def waiting(self) -> int:
        """Calls waiting for the model (the queue that ``queue_size`` bounds)."""
        return self._waiting

    async def start(self) -> None:
        if self._llama is None:
            await asyncio.to_thread(self._load)

    async def aclose(self) -> None:
        async with self._lock:
            llama, self._llama = self._llama, None
            if llama is not None:
                await asyncio.to_thread(llama.close)

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        return await collect(self.stream(messages, params))

    async def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        self._check_admission()
        prompt, tools, grammar = await self._prepare(messages, params)
        async with self._turn():
            deltas = self._run(prompt, params, grammar)
            if tools is None:
                async for delta in deltas:
                    yield delta
            else:
                # Whether the answer is a call is known only at its end.
                answer = _as_call(tools, await collect(deltas))
                yield Delta(text=answer.text, tool_calls=answer.tool_calls)
                yield Delta(finish_reason=answer.finish_reason, usage=answer.usage)

    async def sample(
        self, messages: Sequence[Message], params: SamplingParams, k: int
    ) -> list[Completion]:
        """``k`` answers to one conversation, decoded side by side in one batch: the prompt is
        evaluated once (as ``complete`` evaluates it, reusing the cached prefix) and its KV
        cache shared by the ``k`` sequences, which then advance one token each per decode.

        Sequence ``i`` samples with its own sampler chain (the settings ``complete`` uses) seeded
        ``seed + i``, where ``seed`` is the request's, else the model's ``options.seed``, else
        random; so a request with a seed gets the same ``k`` answers every time, and sequence 0
        is the answer ``complete`` gives (a temperature-0 ``k = 1`` sample is the greedy
        draft). Each sequence stops on its own at EOS, a stop string or ``max_tokens``, and has
        its own ``finish_reason``; a ``response_format`` or forced tool call holds every
        sequence to its grammar. The context's free room is shared: each sequence writes at
        most ``(context_window - prompt) // k`` tokens.

        Usage is OpenAI's for one request with ``n = k``: the first completion carries the
        prompt (and the prompt tokens actually evaluated), the others only their own
        completion tokens, so the summed usage counts the prompt once. Same lock, queue and
        cancellation as ``stream``."""
        if not 1 <= k <= MAX_SEQUENCES:
            raise InvalidRequest(f"between 1 and {MAX_SEQUENCES} samples at once", param="n")
        self._check_admission()
        prompt, tools, grammar = await self._prepare(messages, params)
        if self._spec.context_window - len(prompt) < k:
            raise UpstreamRejected(
                f"the prompt is {len(prompt)} tokens; {self.model_id} holds "
                f"{self._spec.context_window}, too few for {k} answers",
                param="messages",
            )
        async with self._turn():
            answers = await _in_worker(
                lambda stop: self._generate_batch(prompt, params, grammar, k, stop)
            )
        return answers if tools is None else [_as_call(tools, a) for a in answers]

    async def _prepare(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> tuple[list[int], ToolUse | None, Any]:
        """The prompt's tokens, the request's tools and the grammar its answer is held to."""
        tools = ToolUse.from_params(params)
        if tools is not None:
            messages = with_tools(messages, tools, template_takes_tools=self._takes_tools)
        prompt = self._prompt_tokens(messages, tools)
        response_format = params.response_format
        if tools is not None and tools.forced:
            response_format = {"type": "json_schema", "json_schema": {"schema": tools.schema()}}
        # Built before the lock, so a slow grammar never holds the model (proxy.schema_bounds
        # keeps it fast); a schema llama.cpp cannot convert is the client's to fix.
        grammar = await asyncio.to_thread(_grammar, response_format) if response_format else None
        return prompt, tools, grammar

    async def stream_text(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Delta, None]:
        """Continue ``prompt`` as it is: no chat template, a BOS token first as the model
        expects; tools and response formats do not apply."""
        self._check_admission()
        assert self._llama is not None
        tokens = self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) >= self._spec.context_window:
            raise ContextLengthExceeded(
                overflow_message(
                    self._spec.context_window, self.model_id, f"{len(tokens)} tokens", of="prompt"
                ),
                param="prompt",
            )
        async with self._turn():
            async for delta in self._run(tokens, params, None):
                yield delta

    async def embed(self, inputs: Sequence[str], dimensions: int | None) -> Embeddings:
        """The model's pooled embedding of each input (the model is loaded to embed: its entry
        lists the ``embeddings`` capability)."""
        if not self._embeds:
            raise UpstreamRejected(f"model {self.model_id} is not loaded to embed", param="model")
        if dimensions is not None:
            raise UpstreamRejected(
                f"model {self.model_id} cannot shorten its embeddings", param="dimensions"
            )
        self._check_admission()
        llama = self._llama
        assert llama is not None
        for text in inputs:
            size = len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if size > self._spec.context_window:
                raise ContextLengthExceeded(
                    overflow_message(
                        self._spec.context_window, self.model_id, f"{size} tokens", of="input"
                    ),
                    param="input",
                )
        async with self._turn():
            result = await asyncio.to_thread(llama.create_embedding, list(inputs))
        vectors = tuple(_vector(item["embedding"]) for item in result["data"])
        return Embeddings(vectors, Usage(int(result["usage"]["prompt_tokens"]), 0))

    def _check_admission(self) -> None:
        """Loaded, and room in the queue (else 429 at once rather than an unbounded wait)."""
        if self._llama is None:
            raise BackendUnavailable(f"model {self.model_id} is not loaded")
        if self._lock.locked() and self._waiting >= self._queue_size:
            raise QueueFull(f"model {self.model_id} has {self._waiting} requests waiting")

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """The model to this call alone, counted as waiting until it gets it."""
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    async def likelihood(self, messages: Sequence[Message], answer: str) -> Likelihood:
        """The mean log-probability of ``answer``'s tokens as the reply to ``messages``: one
        prefill of the answer (the conversation's prefix comes from the KV cache when the
        previous call shared it), under the same lock and queue as generation."""
        self._check_admission()
        prompt = self._prompt_tokens(messages)
        assert self._llama is not None
        answer_tokens = self._llama.tokenize(answer.encode("utf-8"), add_bos=False, special=False)
        if len(prompt) + len(answer_tokens) > self._spec.context_window:
            raise UpstreamRejected(
                f"the conversation and answer are {len(prompt) + len(answer_tokens)} tokens; "
                f"{self.model_id} holds {self._spec.context_window}",
                param="messages",
            )
        async with self._turn():
            return await asyncio.to_thread(self._score, prompt, answer_tokens)

    def _load(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = resolve_model_path(self._spec.model)
        options = self._spec.options
        chat_format = getattr(options, "chat_format", None)
        if chat_format is not None and chat_format not in CHAT_FORMATS:
            raise BackendError(
                f"model {self.model_id}: unknown chat_format {chat_format!r}; "
                f"known: {', '.join(sorted(CHAT_FORMATS))}"
            )
        self._default_seed = getattr(options, "seed", None)
        settings: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": self._spec.context_window,
            "n_threads": getattr(options, "n_threads", None) or default_threads(),
            "n_batch": getattr(options, "n_batch", 512),
            "embedding": self._embeds,
            "verbose": False,
        }
        llama = Llama(**settings)
        architecture = llama.metadata.get("general.architecture", "")
        if self._embeds and f"{architecture}.pooling_type" not in llama.metadata:
            # A chat model's GGUF names no pooling, and llama.cpp then embeds every token:
            # one vector per input needs the mean of them.
            import llama_cpp

            llama.close()
            llama = Llama(**settings, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        if not self._embeds:
            _hold_sequences(llama, MAX_SEQUENCES)
        template = (
            CHAT_FORMATS[chat_format]
            if chat_format is not None
            else llama.metadata.get("tokenizer.chat_template")
            or _TEMPLATES_BY_ARCHITECTURE.get(architecture, _CHATML)
        )
        fold_system = template is _GEMMA
        eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "ignore")
        bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "ignore")
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

        takes_tools = "tools" in template

        def render(messages: Sequence[Message], tools: ToolUse | None) -> str:
            flat: Any = [_flatten(m) for m in messages]
            if fold_system:
                flat = _fold_system(flat)
            if tools is not None and takes_tools:
                listed: Any = [
                    {"type": "function", "function": {"name": n, "parameters": p}}
                    for n, p in tools.functions.items()
                ]
                return str(formatter(messages=flat, tools=listed).prompt)
            return str(formatter(messages=flat).prompt)

        self._render = render
        self._takes_tools = takes_tools
        self._stop_texts = tuple(t for t in (eos, "<|im_end|>", "<end_of_turn>") if t)
        self._llama = llama
        log.info("backend.loaded", model=self.model_id, path=str(path), n_ctx=llama.n_ctx())

    def _prompt_tokens(
        self, messages: Sequence[Message], tools: ToolUse | None = None
    ) -> list[int]:
        assert self._llama is not None
        assert self._render is not None
        try:
            text = self._render(messages, tools)
        except Exception as exc:  # the template's raise_exception, or a malformed message
            raise InvalidRequest(
                f"the chat template of {self.model_id} rejected the messages: {exc}",
                param="messages",
            ) from exc
        tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) >= self._spec.context_window:
            raise ContextLengthExceeded(
                overflow_message(self._spec.context_window, self.model_id, f"{len(tokens)} tokens")
            )
        return tokens

    async def _run(
        self, prompt: list[int], params: SamplingParams, grammar: Any
    ) -> AsyncGenerator[Delta, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = loop.run_in_executor(None, self._generate, prompt, params, grammar, stop, emit)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Delta)
                yield item
        finally:
            stop.set()
            # The lock is only released once the thread is out of llama.cpp.
            while not worker.done():
                try:
                    await asyncio.shield(worker)
                except asyncio.CancelledError:
                    continue
                except Exception:
                    break

    def _generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        grammar: Any,
        stop: threading.Event,
        emit: Callable[[object], None],
    ) -> None:
        """Worker thread: sample tokens until a stop condition, emitting text deltas."""
        import llama_cpp

        llama = self._llama
        assert llama is not None
        try:
            room = self._spec.context_window - len(prompt)
            llama.set_seed(self._seed(params))
            llama_cpp.llama_perf_context_reset(llama.ctx)
            _evaluate_all_but_last(llama, prompt)
            answer = _Answer(params, params.stop + self._stop_texts, room)
            cancelled = False
            for token in llama.generate(prompt, **_sampling(params), grammar=grammar):
                if stop.is_set():
                    cancelled = True
                    break
                delta = answer.take(llama, token, -1)
                if delta is not None:
                    emit(delta)
                if answer.finish is not None:
                    break
            tail = answer.close()
            if tail is not None:
                emit(tail)
            perf = llama_cpp.llama_perf_context(llama.ctx)
            usage = Usage(len(prompt), answer.generated, int(perf.n_p_eval))
            finish = "cancelled" if cancelled else answer.finish or "length"
            emit(Delta(finish_reason=finish, usage=usage))
        except Exception as exc:
            log.exception("backend.failed", model=self.model_id)
            emit(BackendError(f"model {self.model_id} failed while generating"))
            del exc
        finally:
            emit(_DONE)

    def _generate_batch(
        self,
        prompt: list[int],
        params: SamplingParams,
        grammar: Any,
        k: int,
        stop: threading.Event,
    ) -> list[Completion]:
        """Worker thread: ``k`` sequences decoded side by side (``sample``). Sequence 0 is the
        context's own sequence, as in ``_generate``; sequences 1 to k - 1 are removed from the
        cache afterwards and sequence 0 is cut back to the prompt, with llama-cpp-python's
        record of the evaluated tokens to match, so the next call reuses the prompt's prefix."""
        import llama_cpp
        from llama_cpp._internals import LlamaBatch

        llama = self._llama
        assert llama is not None
        memory = llama._ctx.memory
        threads, batch_threads = llama.n_threads, llama.n_threads_batch
        seed = self._seed(params)
        samplers = []
        batch = LlamaBatch(n_tokens=k, embd=0, n_seq_max=1, verbose=False)
        try:
            for i in range(k):
                llama.set_seed((seed + i) % _RANDOM_SEED)
                samplers.append(llama._init_sampler(**_sampling(params), grammar=grammar))
            room = (self._spec.context_window - len(prompt)) // k
            answers = [_Answer(params, params.stop + self._stop_texts, room) for _ in range(k)]
            cached = _evaluate_all_but_last(llama, prompt)
            # k tokens a step is decoding, not a prompt: llama.cpp gives any batch of more
            # than one token the batch thread count (every core, llama-cpp-python's default),
            # which stalls at each layer's barrier when the machine is busy (default_threads).
            llama_cpp.llama_set_n_threads(llama.ctx, threads, threads)
            # The last prompt token alone, as Llama.generate evaluates it (so sequence 0 is the
            # answer complete() gives); every sequence samples its first token from its logits.
            _fill(batch, [(prompt[-1], len(prompt) - 1, 0)])
            llama._ctx.decode(batch)
            llama.input_ids[len(prompt) - 1] = prompt[-1]
            llama.n_tokens = len(prompt)
            for i in range(1, k):
                llama_cpp.llama_memory_seq_cp(memory, 0, i, -1, -1)
            rows = dict.fromkeys(range(k), 0)  # sequence -> its logits' row in the last batch
            texts: list[list[Delta]] = [[] for _ in range(k)]
            while rows and not stop.is_set():
                step: list[tuple[int, int, int]] = []
                for i, row in rows.items():
                    token = samplers[i].sample(llama._ctx, row)
                    delta = answers[i].take(llama, token, row)
                    if delta is not None:
                        texts[i].append(delta)
                    if answers[i].finish is None:
                        step.append((token, len(prompt) + answers[i].generated - 1, i))
                if not step:
                    break
                _fill(batch, step)
                llama._ctx.decode(batch)
                rows = {i: row for row, (_, _, i) in enumerate(step)}
            if stop.is_set():
                return []
            completions = []
            for i, answer in enumerate(answers):
                tail = answer.close()
                deltas = texts[i] + ([tail] if tail is not None else [])
                usage = (
                    Usage(len(prompt), answer.generated, len(prompt) - cached)
                    if i == 0
                    else Usage(0, answer.generated, 0)
                )
                completions.append(
                    Completion(
                        "".join(d.text for d in deltas),
                        answer.finish or "length",
                        usage,
                        logprobs=tuple(e for d in deltas for e in d.logprobs),
                    )
                )
            return completions
        except Exception as exc:
            log.exception("backend.failed", model=self.model_id)
            raise BackendError(f"model {self.model_id} failed while generating") from exc
        finally:
            llama_cpp.llama_set_n_threads(llama.ctx, threads, batch_threads)
            for i in range(1, k):
                llama_cpp.llama_memory_seq_rm(memory, i, -1, -1)
            llama_cpp.llama_memory_seq_rm(memory, 0, llama.n_tokens, -1)
            llama._requires_eval = True
            for sampler in samplers:
                sampler.close()
            batch.close()  # type: ignore[no-untyped-call]

    def _seed(self, params: SamplingParams) -> int:
        """The request's seed, else the model's ``options.seed``, else a random one."""
        seed = params.seed if params.seed is not None else self._default_seed
        return seed if seed is not None else random.getrandbits(31)

    def _score(self, prompt: list[int], answer: list[int]) -> Likelihood:
        """Worker thread: evaluate ``prompt + answer`` and read the answer tokens' log-probs.

        The logits at position i predict token i + 1, so logits are requested only for the
        last prompt token and every answer token but the last; the KV prefix shared with the
        previous call is kept, as ``Llama.generate`` does, and llama-cpp-python's own record of
        the evaluated tokens is updated so the next call reuses this one's prefix."""
        import numpy as np

        llama = self._llama
        assert llama is not None
        if not answer:
            return Likelihood(0.0, 0, Usage(len(prompt), 0, 0))
        tokens = prompt + answer
        cached = 0
        for have, want in zip(llama._input_ids.tolist(), tokens[: len(prompt) - 1], strict=False):
            if have != want:
                break
            cached += 1
        try:
            llama.n_tokens = cached
            llama.eval(tokens[cached : len(prompt) - 1])
            total = 0.0
            # Logit rows are vocabulary-wide (49,152 floats for SmolLM2): a few at a time.
            batch_size = min(llama.n_batch, 64)
            scored = tokens[len(prompt) - 1 : -1]
            for start in range(0, len(scored), batch_size):
                chunk = scored[start : start + batch_size]
                n_past = llama.n_tokens
                llama._batch.set_batch(batch=chunk, n_past=n_past, logits_all=True)
                llama._ctx.decode(llama._batch)
                llama.input_ids[n_past : n_past + len(chunk)] = chunk
                llama.n_tokens += len(chunk)
                logits = np.ctypeslib.as_array(
                    llama._ctx.get_logits(),  # type: ignore[no-untyped-call]
                    shape=(len(chunk), llama.n_vocab()),
                )
                top = logits.max(axis=1, keepdims=True)
                log_norm = np.log(np.exp(logits - top).sum(axis=1, dtype=np.float64)) + top[:, 0]
                targets = answer[start : start + len(chunk)]
                total += float((logits[np.arange(len(chunk)), targets] - log_norm).sum())
        except Exception as exc:
            log.exception("backend.score_failed", model=self.model_id)
            raise BackendError(f"model {self.model_id} failed while scoring") from exc
        finally:
            # The logits in the context are no longer the prompt's: make the next generate()
            # decode at least one token before it samples.
            llama._requires_eval = True
        evaluated = len(tokens) - 1 - cached
        return Likelihood(total / len(answer), len(answer), Usage(len(tokens), 0, evaluated))


def _evaluate_all_but_last(llama: Llama, prompt: list[int]) -> int:
    """Bring the KV cache to ``prompt[:-1]``, reusing the prefix it already holds, so that
    ``Llama.generate`` evaluates the last prompt token on its own. llama.cpp's numbers for a
    position depend on how many tokens were evaluated with it; evaluating the last one alone
    every time makes a temperature-0 answer independent of how much of its prompt was cached
    (the same request streamed and not, or asked twice, answers the same). Returns how many
    prompt tokens the cache already held."""
    head = prompt[:-1]
    cached = 0
    for have, want in zip(llama._input_ids.tolist(), head, strict=False):
        if have != want:
            break
        cached += 1
    llama.n_tokens = cached
    llama.eval(head[cached:])  # trims the cache past ``cached`` first
    llama._requires_eval = True
    return cached


def _token_logprob(llama: Llama, token: int, piece: bytes, top: int, row: int = -1) -> TokenLogprob:
    """OpenAI's logprobs entry for ``token``, from the distribution it was sampled from: the
    model's own (the logits of the last batch's output ``row``, before temperature and
    penalties)."""
    import numpy as np

    logits = np.ctypeslib.as_array(
        llama._ctx.get_logits_ith(row),
        shape=(llama.n_vocab(),),
    )
    peak = float(logits.max())
    log_norm = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))

    def entry(tok: int, raw: bytes) -> dict[str, Any]:
        return {
            "token": raw.decode("utf-8", "replace"),
            "logprob": float(logits[tok]) - log_norm,
            "bytes": list(raw),
        }

    best = np.argpartition(-logits, top)[:top] if top else np.array([], dtype=np.intp)
    ranked = sorted(best.tolist(), key=lambda t: -float(logits[t]))
    return {
        **entry(token, piece),
        "top_logprobs": [entry(t, llama.detokenize([t])) for t in ranked],
    }


def _hold_sequences(llama: Llama, count: int) -> None:
    """Give ``llama`` a context that decodes up to ``count`` sequences side by side, sharing
    one KV cache of ``n_ctx`` cells (``kv_unified``: a prompt shared by the sequences takes its
    cells once). ``Llama`` always makes a one-sequence context and takes no setting for this,
    so its context is replaced, with the same parameters otherwise, before any use."""
    from llama_cpp._internals import LlamaContext

    params = llama.context_params
    params.n_seq_max = count
    params.kv_unified = True
    single = llama._ctx
    llama._ctx = llama._stack.enter_context(
        contextlib.closing(LlamaContext(model=llama._model, params=params, verbose=False))
    )
    single.close()  # type: ignore[no-untyped-call]


def _sampling(params: SamplingParams) -> dict[str, Any]:
    """The sampler settings of a request, the same for ``Llama.generate`` and each sequence
    of ``sample``."""
    return {
        "temp": 1.0 if params.temperature is None else params.temperature,
        "top_p": 1.0 if params.top_p is None else params.top_p,
        "top_k": 40 if params.top_k is None else params.top_k,
        "min_p": 0.05 if params.min_p is None else params.min_p,
        "repeat_penalty": _REPEAT_PENALTY
        if params.repeat_penalty is None
        else params.repeat_penalty,
        "presence_penalty": params.presence_penalty or 0.0,
        "frequency_penalty": params.frequency_penalty or 0.0,
    }


def _fill(batch: Any, tokens: Sequence[tuple[int, int, int]]) -> None:
    """Set ``batch`` to ``(token, position, sequence)`` entries, each with its logits."""
    raw = batch.batch
    raw.n_tokens = len(tokens)
    for row, (token, position, sequence) in enumerate(tokens):
        raw.token[row] = token
        raw.pos[row] = position
        raw.seq_id[row][0] = sequence
        raw.n_seq_id[row] = 1
        raw.logits[row] = True


async def _in_worker(work: Callable[[threading.Event], _T]) -> _T:
    """``work(stop)`` in a worker thread. When the awaiting task is cancelled, ``stop`` is set
    and the cancellation waits for the thread to leave llama.cpp (the caller holds the lock)."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    worker = loop.run_in_executor(None, work, stop)
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        stop.set()
        while not worker.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(worker)
        raise


def _as_call(tools: ToolUse, answer: Completion) -> Completion:
    """``answer`` as a tool call when its text is one."""
    calls = tools.to_calls(answer.text)
    if not calls:
        return answer
    return Completion("", "tool_calls", answer.usage, calls, answer.logprobs)


class _Answer:
    """One sequence's answer as its tokens arrive: EOS, stop strings (text that may begin one
    is held back), UTF-8 split across tokens, logprobs kept with the text they belong to, and
    the token limit (``max_tokens``, at most ``room``). ``finish`` is None until it ends."""

    def __init__(self, params: SamplingParams, stops: Sequence[str], room: int) -> None:
        self._limit = min(params.max_tokens or room, room)
        self._top = params.top_logprobs or 0 if params.logprobs else None
        self._stops = _StopMatcher(stops)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending: list[TokenLogprob] = []  # logprobs of tokens whose text is held back
        self.generated = 0
        self.finish: str | None = None

    def take(self, llama: Llama, token: int, row: int) -> Delta | None:
        """Add a sampled token (its logits in the last batch's output ``row``); the text that
        may be sent now."""
        import llama_cpp

        if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
            self.finish = "stop"
            return None
        self.generated += 1
        piece = llama.detokenize([token])
        if self._top is not None:
            self._pending.append(_token_logprob(llama, token, piece, self._top, row))
        text, matched = self._stops.feed(self._decoder.decode(piece))
        delta = None
        if text:
            delta = Delta(text=text, logprobs=tuple(self._pending))
            self._pending.clear()
        if matched:
            self.finish = "stop"
        elif self.generated >= self._limit:
            self.finish = "length"
        return delta

    def close(self) -> Delta | None:
        """The text held back, unless the answer ended on EOS or a stop string."""
        if self.finish == "stop":
            return None
        tail = self._stops.flush(self._decoder.decode(b"", final=True))
        return Delta(text=tail, logprobs=tuple(self._pending)) if tail else None


def default_threads() -> int:
    """Half the logical cores: llama.cpp's threads spin at every layer barrier, and with one
    thread per logical core any other work on the machine (this proxy's own HTTP handling
    included) stalls them. Measured on 2 vCPUs with another process busy: SmolLM2 decoded
    5 tok/s with 2 threads and 63 tok/s with 1 (benchmarks/hardware.py)."""
    return max(1, (os.cpu_count() or 2) // 2)


class _StopMatcher:
    """Finds the earliest stop string in streamed text, holding back what might begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was reached."""
        buffer = self._pending + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return buffer[: min(hits)], True
        hold = max((_overlap(buffer, s) for s in self._stops), default=0)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold], False

    def flush(self, text: str) -> str:
        out, self._pending = self._pending + text, ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0


def _flatten(message: Message) -> dict[str, Any]:
    """A message as chat templates expect it: string content, OpenAI's newer roles mapped."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    role = message.get("role", "user")
    return {"role": "system" if role == "developer" else role, "content": content or ""}


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System messages prepended to the next user turn, for templates without a system role."""
    folded: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message["role"] == "system":
            pending.append(message["content"])
            continue
        if pending and message["role"] == "user":
            message = {**message, "content": "\n\n".join([*pending, message["content"]])}
            pending = []
        folded.append(message)
    if pending:
        folded.append({"role": "user", "content": "\n\n".join(pending)})
    return folded


def _grammar(response_format: Any) -> Any:
    """The llama.cpp grammar of a ``response_format``; ``InvalidRequest`` when llama.cpp's
    converter refuses the schema (an unsupported keyword or pattern)."""
    if not response_format:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    kind = response_format.get("type")
    if kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not schema:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        try:
            rules = json_schema_to_gbnf(json.dumps(schema))
        except Exception as exc:  # the converter raises AssertionError, ValueError, KeyError
            raise InvalidRequest(
                f"the JSON schema cannot be turned into a grammar: {type(exc).__name__}: "
                f"{str(exc)[:120]}",
                param="response_format",
                code="invalid_schema",
            ) from None
        # The converter lets raw control characters into strings, which JSON forbids (a
        # sampled answer then held a newline inside a string that json.loads refused).
        return LlamaGrammar.from_string(rules.replace(_ANY_CHAR, _JSON_CHAR), verbose=False)
    return None


def _vector(embedding: Any) -> tuple[float, ...]:
    """An input's pooled embedding as a unit-length vector, as OpenAI's are."""
    values = [float(x) for x in embedding]
    norm = math.sqrt(sum(x * x for x in values)) or 1.0
    return tuple(x / norm for x in values)
