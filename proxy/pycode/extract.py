"""The Python code in a model's answer: the first fenced block (```python, ```py or bare ```)
that defines ``def <entry_point>(``, else the first such block, else the whole answer.

Shared by the ``python_tests`` grader (calibration) and the request's own code checks
(``proxy.selection.code_check``), so a sample is judged on the same code in both.
"""

from __future__ import annotations

import re

_OPENING_FENCE = r"^[ \t]*```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n"
_FENCE = re.compile(_OPENING_FENCE + r"(?P<body>.*?)^[ \t]*```", re.M | re.S)
_UNCLOSED_FENCE = re.compile(_OPENING_FENCE + r"(?P<body>.*)\Z", re.M | re.S)
_PYTHON_FENCES = frozenset({"", "python", "python3", "py"})


def extract_code(answer: str, entry_point: str) -> str:
    """The code in ``answer`` to run (see the module docstring). An unclosed last fence, as in
    an answer cut off by its token limit, counts as a block."""
    blocks = [m["body"] for m in _FENCE.finditer(answer) if m["lang"].lower() in _PYTHON_FENCES]
    unclosed = None if blocks else _UNCLOSED_FENCE.search(answer)
    if unclosed and unclosed["lang"].lower() in _PYTHON_FENCES:
        blocks = [unclosed["body"]]
    for block in blocks:
        if defines(block, entry_point):
            return block
    return blocks[0] if blocks else answer


def defines(code: str, entry_point: str) -> bool:
    """Whether ``code`` has a line ``def <entry_point>(`` (``async def`` too)."""
    definition = rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{entry_point}[ \t]*\("
    return re.search(definition, code, re.MULTILINE) is not None
