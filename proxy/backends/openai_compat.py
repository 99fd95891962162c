"""Backends for OpenAI-compatible servers: vLLM, llama.cpp server, TGI, Ollama.

One pooled ``aiohttp.ClientSession`` per backend, spread over the replicas named by
``api_base`` (see ``replicas.py`` for the choice and the down marks). aiohttp rather than httpx
because the proxy's own overhead is mostly this client's: on the benchmark machine httpx cost
~0.5 ms of CPU per call and degraded with 16 calls in flight; aiohttp costs a fifth of that
(``benchmarks/README.md``). At most ``max_connections`` calls are in flight per backend; a call
that waits ``read_timeout_s`` for one of those slots times out. Proxy variables in the
environment are not used: the proxy opens no connection that the policy does not name.

Errors are translated once, here, most specific first::

    aiohttp.ClientConnectorError,         BackendUnavailable  replica marked down, next one tried
      ConnectionTimeoutError (connect)
    aiohttp.SocketTimeoutError (read)     BackendTimeout
    no free connection slot in time       BackendTimeout
    other aiohttp.ClientError             BackendError
    upstream 401, 403, 404                BackendError        the proxy's key or model name is wrong
    upstream 408                          BackendTimeout
    upstream 429, 5xx                     BackendError        retryable: another model may answer
    upstream other 4xx                    UpstreamRejected    the request itself; never retried
    a body that is not the expected JSON  BackendError

A failure before any of the answer has arrived (a refused connection, a 429 or 5xx status, a
connection that breaks before the first chunk) moves the call to the model's next replica; only
when every replica has failed does the error reach the pipeline, which may fall back to another
model. A refused connection marks the replica down, unless the proxy itself ran out of file
descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``): that is no fault of
the replica. Once part of the answer has arrived, an error ends the call.

Streams ask for ``stream_options.include_usage``. When the upstream sends no usage chunk (older
servers, llama.cpp server) the final usage counts one completion token per content chunk and 0
prompt tokens. Tool calls arrive in fragments and are delivered whole on the last delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import orjson
import structlog

from proxy.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    UpstreamRejected,
)
from proxy.logs import upstream_request_id
from proxy.results import Usage
from routing.policy import ModelSpec, OpenAIOptions

from .base import (
    Completion,
    Delta,
    Embeddings,
    Message,
    SamplingParams,
)
from .openai_protocol import (
    ERROR_TEXT_LIMIT,
    StreamState,
    error_code,
    error_message,
    logprobs_of,
    orjson_loads,
    parse_embeddings,
    parse_usage,
    status_error,
)
from .replicas import Replica, ReplicaSet

if TYPE_CHECKING:
    from . import BackendSettings

log = structlog.get_logger(__name__)

# Idle upstream connections are dropped before uvicorn's (vLLM's server) 5-second keep-alive
# would close them, so a request never lands on a connection the server is closing.
_KEEPALIVE_S = 4.0
_MAX_SAMPLES = 16  # the wire's bound on n


class OpenAICompatBackend:
    """A model served by one or more OpenAI-compatible servers (``/v1/chat/completions``)."""

    serial = False

    @classmethod
    def from_policy(cls, spec: ModelSpec, settings: BackendSettings) -> Self:
        return cls(spec)

    def __init__(self, spec: ModelSpec) -> None:
        if not spec.api_base:
            raise ValueError(f"model {spec.id}: backend {spec.backend} needs api_base")
        self.model_id = spec.id
        self._spec = spec
        self._options = spec.options if isinstance(spec.options, OpenAIOptions) else OpenAIOptions()
        self._replicas = ReplicaSet(
            spec.api_base, retry_down_after_s=self._options.retry_down_after_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(self._options.max_connections)
        self._takes_n = True  # until the upstream shows it does not (``sample``)

    @property
    def replicas(self) -> tuple[Replica, ...]:
        return self._replicas.replicas

    @property
    def ready(self) -> bool:
        return self._session is not None and self._replicas.any_up()

    async def start(self) -> None:
        if self._session is not None:
            return
        headers = {"content-type": "application/json"}
        env = self._spec.api_key_env
        key = os.environ.get(env) if env else None
        if key:
            headers["authorization"] = f"Bearer {key}"
        options = self._options
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=None,
                sock_connect=options.connect_timeout_s,
                sock_read=options.read_timeout_s,
            ),
            connector=aiohttp.TCPConnector(
                limit=options.max_connections, keepalive_timeout=_KEEPALIVE_S
            ),
        )
        log.info("backend.started", model=self.model_id, replicas=len(self._replicas.replicas))

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def complete(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        raw = await self._post(self._body(messages, params, stream=False))
        return _parse_choices(raw, self.model_id)[0]

    async def sample(
        self, messages: Sequence[Message], params: SamplingParams, k: int
    ) -> list[Completion]:
        """``k`` completions: one upstream call with ``n = k`` (vLLM and llama.cpp's server
        answer it, reading the prompt once), and as many single calls side by side as the
        upstream's answer falls short of ``k``, or ``k`` of them when it refuses ``n`` (a 4xx
        to the ``n`` call that a single call does not get). An upstream that fell short or
        refused is asked with single calls from then on. Single call ``i`` is sent the
        request's seed plus ``i``. Usage: the ``n`` call's on its first completion (OpenAI
        reports one per call), each single call's on its own."""
        if not 1 <= k <= _MAX_SAMPLES:
            raise InvalidRequest(f"between 1 and {_MAX_SAMPLES} samples at once", param="n")
        if k == 1:
            return [await self.complete(messages, params)]
        answers: list[Completion] = []
        refused = False  # the upstream answered the n call with a 4xx
        if self._takes_n:
            try:
                raw = await self._post(self._body(messages, params, stream=False, n=k))
                answers = _parse_choices(raw, self.model_id)[:k]
            except UpstreamRejected:
                refused = True
        singles = [
            asyncio.ensure_future(self.complete(messages, _seed_plus(params, i)))
            for i in range(len(answers), k)
        ]
        try:
            answers += await asyncio.gather(*singles)
        except BaseException:
            for single in singles:
                single.cancel()
            await asyncio.gather(*singles, return_exceptions=True)
            raise
        if singles and self._takes_n:
            log.info("backend.n_not_honoured", model=self.model_id, refused=refused, k=k)
            self._takes_n = False
        return answers

    async def _post(self, body: bytes) -> bytes:
        """A non-streaming call's response body (the replica choice, failover and error
        translation of ``_exchange``)."""
        async with self._slot():
            failed: list[Replica] = []
            while True:
                async with self._exchange(body, failed) as (replica, response):
                    try:
                        return await response.read()
                    except aiohttp.ClientError as exc:
                        self._failed(failed, replica, exc)
                        continue

    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> AsyncGenerator[Delta, None]:
        return self._stream(self._body(messages, params, stream=True), "chat/completions")

    async def embed(self, inputs: Sequence[str], dimensions: int | None) -> Embeddings:
        """The upstream's ``/embeddings`` (vLLM serves embedding models there)."""
        request: dict[str, Any] = {
            "model": self._spec.model,
            "input": list(inputs),
            "encoding_format": "float",
        }
        if dimensions is not None:
            request["dimensions"] = dimensions
        body = orjson.dumps(request)
        async with self._slot():
            failed: list[Replica] = []
            while True:
                async with self._exchange(body, failed, "embeddings") as (replica, response):
                    try:
                        raw = await response.read()
                    except aiohttp.ClientError as exc:
                        self._failed(failed, replica, exc)
                        continue
                return parse_embeddings(orjson_loads(raw, self.model_id), self.model_id)

    def stream_text(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Delta, None]:
        """Raw text continuation: the upstream's ``/completions``."""
        fields = params.replace(tools=None, tool_choice=None, response_format=None).to_openai()
        body = {
            "model": self._spec.model,
            "prompt": prompt,
            **{k: v for k, v in fields.items() if k not in ("parallel_tool_calls", "logprobs")},
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.pop("top_logprobs", None)
        return self._stream(orjson.dumps(body), "completions")

    async def _stream(self, body: bytes, path: str) -> AsyncGenerator[Delta, None]:
        async with self._slot():
            failed: list[Replica] = []
            while True:
                state = StreamState(self.model_id)
                async with self._exchange(body, failed, path) as (replica, response):
                    try:
                        async for payload in _sse_data(response):
                            if payload == b"[DONE]":
                                state.done = True
                                continue
                            delta = state.feed(orjson_loads(payload, self.model_id))
                            if delta is not None:
                                yield delta
                    except aiohttp.ClientError as exc:
                        if state.chunks:
                            raise _translate(exc, self.model_id) from exc
                        self._failed(failed, replica, exc)
                        continue
                    if not state.chunks and not state.done and state.finish_reason is None:
                        # The replica closed the stream before sending anything: nothing was
                        # produced, so its other replicas may still answer.
                        self._failed(failed, replica, None)
                        continue
                yield state.finish()
                return

    def _failed(self, failed: list[Replica], replica: Replica, exc: Exception | None) -> None:
        """A replica broke off before any of the answer arrived: try the model's next one."""
        failed.append(replica)
        log.warning(
            "backend.replica_failed",
            model=self.model_id,
            replica=replica.url,
            error=type(exc).__name__ if exc is not None else "EmptyStream",
        )

    def _body(
        self, messages: Sequence[Message], params: SamplingParams, *, stream: bool, n: int = 1
    ) -> bytes:
        body: dict[str, Any] = {
            "model": self._spec.model,
            "messages": messages,
            **params.to_openai(),
        }
        if n > 1:
            body["n"] = n
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body, default=_plain)

    @contextlib.asynccontextmanager
    async def _exchange(
        self, body: bytes, failed: list[Replica], path: str = "chat/completions"
    ) -> AsyncIterator[tuple[Replica, aiohttp.ClientResponse]]:
        """POST ``body`` to ``path`` under the best replica not in ``failed``; the response has
        a 2xx status.

        A replica that refuses the connection is marked down and the next one tried; one that
        answers 429 or 5xx (or whose connection breaks before the status) is added to
        ``failed`` and the next one tried, without a down mark (it answered). The last
        failure is raised when no replica is left."""
        session = self._session
        if session is None:
            raise BackendUnavailable(f"model {self.model_id} is not started")
        last: BackendError | None = None
        while (replica := self._replicas.acquire(exclude=failed)) is not None:
            try:
                rid = upstream_request_id()
                try:
                    response = await session.post(
                        replica.chat_url if path == "chat/completions" else f"{replica.url}/{path}",
                        data=body,
                        headers={"x-request-id": rid} if rid else None,
                    )
                except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                    failed.append(replica)
                    if _own_exhaustion(exc):
                        # Out of descriptors or memory here: the replica is not at fault.
                        last = BackendUnavailable(
                            f"model {self.model_id}: the proxy could not open a connection "
                            f"({type(exc).__name__})"
                        )
                        break
                    self._replicas.mark_down(replica)
                    log.warning(
                        "backend.replica_down",
                        model=self.model_id,
                        replica=replica.url,
                        error=type(exc).__name__,
                        retry_after_s=self._options.retry_down_after_s,
                    )
                    last = BackendUnavailable(f"model {self.model_id}: the upstream is unreachable")
                    continue
                except aiohttp.ClientError as exc:
                    failed.append(replica)
                    last = _translate(exc, self.model_id)
                    log.warning(
                        "backend.replica_failed",
                        model=self.model_id,
                        replica=replica.url,
                        error=type(exc).__name__,
                    )
                    continue
                if replica.down_until is not None:
                    log.info("backend.replica_up", model=self.model_id, replica=replica.url)
                self._replicas.mark_up(replica)
                try:
                    if response.status >= 400:
                        error = _status_error(response.status, await response.read(), self.model_id)
                        if not error.retryable:
                            raise error
                        failed.append(replica)
                        last = error
                        continue
                    yield replica, response
                finally:
                    response.release()  # closes the connection unless the body was read
                return
            except aiohttp.ClientError as exc:
                raise _translate(exc, self.model_id) from exc
            finally:
                self._replicas.release(replica)
        raise last or BackendUnavailable(f"model {self.model_id}: no upstream replica is reachable")

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the ``max_connections`` calls in flight, waited for ``read_timeout_s`` at most."""
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._options.read_timeout_s)
            except TimeoutError as exc:
                raise BackendTimeout(
                    f"model {self.model_id}: no free upstream connection in "
                    f"{self._options.read_timeout_s:g} s"
                ) from exc
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()


class VLLMBackend(OpenAICompatBackend):
    """An OpenAI-compatible backend that also reads each vLLM replica's queue depth.

    A background task reads ``GET {root}/metrics`` of every replica that is up, every
    ``metrics_cache_s``; the balancer breaks ties in outstanding requests by the lower
    ``vllm:num_requests_waiting``. The request path never waits for it; a replica whose
    metrics cannot be read counts as 0 waiting.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        if self._poller is None:
            self._poller = asyncio.create_task(
                self._poll_metrics(), name=f"metrics:{self.model_id}"
            )

    async def aclose(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        await super().aclose()

    async def _poll_metrics(self) -> None:
        while (session := self._session) is not None:
            await asyncio.gather(*(self._read_metrics(session, r) for r in self._replicas.up()))
            await asyncio.sleep(self._options.metrics_cache_s)

    async def _read_metrics(self, session: aiohttp.ClientSession, replica: Replica) -> None:
        timeout = aiohttp.ClientTimeout(total=self._options.connect_timeout_s)
        try:
            async with session.get(f"{replica.root}/metrics", timeout=timeout) as response:
                response.raise_for_status()
                replica.waiting, replica.running = parse_vllm_metrics(await response.text())
        except Exception as exc:  # the poller must outlive any one bad scrape
            replica.waiting = replica.running = 0
            log.debug("backend.metrics_failed", replica=replica.url, error=type(exc).__name__)


def parse_vllm_metrics(text: str) -> tuple[int, int]:
    """``(waiting, running)`` from vLLM's Prometheus text, summed over its series."""
    totals = {"vllm:num_requests_waiting": 0.0, "vllm:num_requests_running": 0.0}
    for line in text.splitlines():
        if not line.startswith("vllm:num_requests_"):
            continue
        brace = line.find("{")
        name = line[:brace] if brace >= 0 else line.split(" ", 1)[0]
        if name not in totals:
            continue
        rest = line[line.rindex("}") + 1 :] if brace >= 0 else line[len(name) :]
        with contextlib.suppress(ValueError, IndexError):
            totals[name] += float(rest.split()[0])
    return int(totals["vllm:num_requests_waiting"]), int(totals["vllm:num_requests_running"])


async def _sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The payloads of an SSE stream's ``data:`` lines (comments and other fields skipped)."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if buffer.startswith(b"data:"):
        yield buffer[5:].strip()


def _parse_choices(raw: bytes, model_id: str) -> list[Completion]:
    """A ``chat.completion``'s choices in index order, at least one; the call's usage goes on
    the first."""
    data = orjson_loads(raw, model_id)
    try:
        choices = sorted(data["choices"], key=lambda c: c.get("index") or 0)
        completions = [
            Completion(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                usage=parse_usage(data.get("usage")) if not i else Usage(0, 0, 0),
                tool_calls=tuple(choice["message"].get("tool_calls") or ()),
                logprobs=logprobs_of(choice),
            )
            for i, choice in enumerate(choices)
        ]
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(f"model {model_id} sent a completion without choices") from exc
    if not completions:
        raise BackendError(f"model {model_id} sent a completion without choices")
    return completions


def _seed_plus(params: SamplingParams, offset: int) -> SamplingParams:
    return (
        params if params.seed is None or not offset else params.replace(seed=params.seed + offset)
    )


_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _own_exhaustion(exc: aiohttp.ClientError) -> bool:
    """The connection failed for want of this process's resources (file descriptors, buffers,
    memory), not because of the replica."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _EXHAUSTION:
            return True
        cause = getattr(cause, "os_error", None) or cause.__cause__ or cause.__context__
        if cause is exc:
            break
    return False


def _translate(exc: aiohttp.ClientError, model_id: str) -> BackendError:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return BackendUnavailable(f"model {model_id}: the upstream is unreachable")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return BackendTimeout(f"model {model_id}: the upstream timed out ({type(exc).__name__})")
    return BackendError(f"model {model_id}: upstream connection failed ({type(exc).__name__})")


def _status_error(status: int, raw: bytes, model_id: str) -> BackendError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status_error(status, raw[:ERROR_TEXT_LIMIT].decode("utf-8", "replace"), model_id)
    return status_error(status, error_message(body), model_id, error_code(body))


def _plain(value: Any) -> Any:
    """orjson's fallback for the read-only mappings and sequences messages may arrive as."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} upstream")
