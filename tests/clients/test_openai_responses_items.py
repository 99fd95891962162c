"""What the official openai SDK reads back from ``GET /v1/responses/{id}/input_items``: every
item in the shape OpenAI returns it, whatever form the client sent it in (a plain string as
``input``, a message whose ``content`` is a string), so the SDK's typed items work
(``item.content[0].text``)."""

from __future__ import annotations

import openai
from openai.types.responses import (
    ResponseFunctionToolCallItem,
    ResponseFunctionToolCallOutputItem,
    ResponseInputMessageItem,
    ResponseOutputMessage,
)

from tests.clients.conftest import ToolsService, tool_call

ADD = {
    "type": "function",
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


def test_input_items_come_back_in_openais_shape(tools_service: ToolsService) -> None:
    client = openai.OpenAI(base_url=f"{tools_service.base_url}/v1", api_key="sk-any", max_retries=0)
    tools_service.model.queue(tool_call("call_add", "add", {"a": 2, "b": 3}), "It is 5.")
    first = client.responses.create(
        model="auto",
        input="What is 2 + 3?",
        tools=[ADD],  # type: ignore[list-item]
    )
    second = client.responses.create(
        model="auto",
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": "call_add", "output": "5"},
            {"role": "assistant", "content": "The tool says 5."},
            {"role": "user", "content": [{"type": "input_text", "text": "Thanks!"}]},
        ],
        tools=[ADD],  # type: ignore[list-item]
    )
    items = client.responses.input_items.list(second.id, order="asc").data
    question, call, output, said, thanks = items

    assert isinstance(question, ResponseInputMessageItem)
    assert question.role == "user"
    assert question.status == "completed"
    assert [(part.type, part.text) for part in question.content] == [  # type: ignore[union-attr]
        ("input_text", "What is 2 + 3?")
    ]
    assert isinstance(call, ResponseFunctionToolCallItem)
    assert (call.call_id, call.name, call.status) == ("call_add", "add", "completed")
    assert isinstance(output, ResponseFunctionToolCallOutputItem)
    assert (output.output, output.status) == ("5", "completed")
    assert isinstance(said, ResponseOutputMessage)
    assert said.role == "assistant"
    assert said.status == "completed"
    assert [(part.type, part.text) for part in said.content] == [  # type: ignore[union-attr]
        ("output_text", "The tool says 5.")
    ]
    assert isinstance(thanks, ResponseInputMessageItem)
    assert thanks.content[0].text == "Thanks!"  # type: ignore[union-attr]
    assert len({item.id for item in items}) == 5

    newest_first = client.responses.input_items.list(second.id).data
    assert [item.id for item in newest_first] == [item.id for item in reversed(items)]
