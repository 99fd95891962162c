"""An ordinary OpenAI SDK application. The only perfics-specific line is ``base_url``.

make serve            # in another terminal
.venv/bin/python examples/openai_sdk_app.py
"""

from __future__ import annotations

import os

from openai import OpenAI


def main() -> None:
    client = OpenAI(
        base_url=os.environ.get("PERFICS_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "unused"),
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Give me two tips for writing clear emails."},
        ],
        max_tokens=120,
    )
    reply = raw.parse()
    print(reply.choices[0].message.content)
    print()
    for name in (
        "x-perfics-model",
        "x-perfics-rounds",
        "x-perfics-stop-reason",
        "x-perfics-cost-usd",
        "x-perfics-reference-cost-usd",
    ):
        print(f"{name}: {raw.headers.get(name)}")
    if reply.usage is not None:
        print(f"usage over every internal call: {reply.usage.total_tokens} tokens")


if __name__ == "__main__":
    main()
