"""LangChain's ChatOpenAI pointed at perfics (needs ``pip install langchain-openai``).

perfics-specific declarations ride along as extra headers; LangChain itself is unchanged.
"""

from __future__ import annotations

import os


def main() -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="gpt-4o",
        base_url=os.environ.get("PERFICS_URL", "http://127.0.0.1:8000/v1"),
        api_key="unused",
        max_tokens=120,
        default_headers={"X-Perfics-Task": "creative", "X-Perfics-Budget-Usd": "0.001"},
    )
    print(llm.invoke("Write a two-line poem about autumn.").content)


if __name__ == "__main__":
    main()
