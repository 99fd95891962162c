"""Wire parsing details that need no server."""

from __future__ import annotations

import orjson
import pytest

from proxy.errors import InvalidRequest
from proxy.protocol import parse_chat_request


def test_assistant_tool_call_turn_may_omit_content() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
    }
    request = parse_chat_request(orjson.dumps(body))
    assert request.messages[1].tool_calls == [call]


def test_other_roles_still_need_content() -> None:
    body = {"model": "auto", "messages": [{"role": "user"}]}
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(orjson.dumps(body))
    assert info.value.param == "messages[0].content"


def test_answer_limit_follows_design_order() -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}]}
    both = parse_chat_request(orjson.dumps({**body, "max_tokens": 7, "max_completion_tokens": 9}))
    assert both.answer_limit == 7
    only_new = parse_chat_request(orjson.dumps({**body, "max_completion_tokens": 9}))
    assert only_new.answer_limit == 9
