"""The code examples a prompt states, extracted so that a candidate's code can be run on them.

``extract_examples(texts)`` reads the request's own words (the last user message and the system
messages) and returns ``CodeExamples``:

- **doctest lines**: ``>>> expr`` (with ``...`` continuations) and the expected output on the
  lines below, up to a blank line, the next ``>>>`` or the end of a docstring. Compared as
  doctest compares them, whitespace normalised.
- **assert lines**: ``assert add(2, 3) == 5``, when every name in it is a called function or a
  builtin (``assert x > 0`` inside a function body is not an example).
- **call and result**: ``f(x) == y``, ``f(x) = y``, ``f(x) -> y``, ``f(x) => y``, ``f(x) ==> y``,
  ``f(x) ➞ y``, ``f(x) → y``, ``f(x) should return y``, ``f(x) returns y`` — anywhere on a
  line, when every argument and ``y`` are literals (numbers, strings, lists, tuples, dicts,
  sets, ``True``/``False``/``None``, also written ``true``/``false``/``null``). Run as
  ``f(x) == y``. Anything else on the line (``f(x) -> int``, ``f(5) == 1 + 9 = 10``) is not an
  example.
- **Input: … Output: …** pairs (also ``Sample Input``, ``Input 1:``, bold or fenced): the
  input and output text, for a program that reads standard input; and, when the input reads as
  literal arguments (``nums = [2, 7], target = 9`` becomes ``[2, 7], 9``) and the output as a
  literal, the call and value for a function. An input that is itself a call with literal
  arguments (``Input: f(2, 3)`` / ``Output: 5``) is a call-and-result example instead.

It also keeps, from the prompt's code (its fenced Python blocks, or the whole text when it is
Python), the imports and top-level ``def``/``class`` statements (``prelude``) — HumanEval-style
prompts carry the imports and helpers a candidate may not repeat — and the names of the
functions defined there (``functions``; the last is the one an ``Input/Output`` pair calls).

Extraction is pure (no code runs) and bounded: lines over ``_LINE_CHARS`` are not searched for
calls, and at most ``MAX_EXAMPLES`` examples are kept.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_EXAMPLES = 64
_LINE_CHARS = 500
_IO_LINES = 40
_DOCTEST = re.compile(r"^(?P<indent>[ \t]*)>>>(?: (?P<source>.*))?$")
_CALL_START = re.compile(r"(?<![\w.])[A-Za-z_]\w*\(")
_RESULT = re.compile(
    r"\s*(?:==>|=>|->|➞|→|==|=(?!=)|should\s+return|returns)\s*(?P<value>.+?)[\s.,;]*$",
    re.IGNORECASE,
)
_MARKER = r"^[\s>*#\-]*(?:\*\*)?(?:sample\s+|example\s+)?{word}(?:\s*\d+)?(?:\*\*)?\s*(?::|$)"
_INPUT = re.compile(_MARKER.format(word="input") + r"(?:\*\*)?\s*(?P<rest>.*)$", re.IGNORECASE)
_OUTPUT = re.compile(
    _MARKER.format(word="(?:expected\\s+)?output") + r"(?:\*\*)?\s*(?P<rest>.*)$", re.IGNORECASE
)
_IO_END = re.compile(
    r"^[\s>*#\-]*(?:\*\*)?(?:explanation|example|note|constraints?|sample)\b", re.IGNORECASE
)
_DOCSTRING_ENDS = ('"""', "'''")
_FENCE_LINE = re.compile(r"^\s*```[\w+-]*\s*$")
_FENCED = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^[ \t]*```", re.MULTILINE | re.DOTALL
)
_PYTHON_FENCES = frozenset({"", "python", "python3", "py"})
_JSON_NAMES = {"true": True, "false": False, "null": None}
_BUILTINS = frozenset(dir(builtins))
_PRELUDE = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True, slots=True)
class Example:
    """Run ``source`` in the candidate's namespace; what it prints (an expression's value as
    its repr) must equal ``want``, whitespace normalised. An empty ``want``: it must print
    nothing and raise nothing."""

    source: str
    want: str


@dataclass(frozen=True, slots=True)
class IOExample:
    """An ``Input: … Output: …`` pair. ``stdin`` fed to a program must make it print ``stdout``
    (compared word by word); ``args`` and ``expected`` (Python source) are set when the input
    reads as literal arguments and the output as a literal."""

    stdin: str
    stdout: str
    args: str | None
    expected: str | None


@dataclass(frozen=True, slots=True)
class CodeExamples:
    examples: tuple[Example, ...] = ()
    io: tuple[IOExample, ...] = ()
    functions: tuple[str, ...] = ()
    prelude: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.examples) + len(self.io)


def extract_examples(texts: Iterable[str]) -> CodeExamples:
    """The examples stated in ``texts`` (see the module docstring), in order, duplicates once."""
    texts = list(texts)
    functions: list[str] = []
    prelude: list[str] = []
    for text in texts:
        for code in _python_sources(text):
            _definitions(code, prelude, functions)
    # A builtin's name is an example's function only where the prompt defines it (a stated
    # ``ord('z') = 25`` explains the prompt, it does not test the answer).
    builtin = _BUILTINS - set(functions)
    examples: dict[str, Example] = {}
    pairs: dict[tuple[str, str], IOExample] = {}
    for text in texts:
        lines = text.splitlines()
        stated = [
            *_doctests(lines),
            *(_assertion(n) or _call_and_result(n, builtin) for n in lines),
        ]
        for example in stated:
            if example is not None:
                examples.setdefault(example.source, example)
        for pair in _io_pairs(lines):
            # ``Input: f(2, 3)`` / ``Output: 5`` states a call and its result, not a program's
            # standard input.
            given = pair.stdin.strip()
            called = (
                None if "\n" in given else _call_and_result(f"{given} == {pair.stdout}", builtin)
            )
            if called is not None:
                examples.setdefault(called.source, called)
            # A prompt that asks for a function states inputs as its arguments or not at all.
            elif pair.args is not None or not functions:
                pairs.setdefault((pair.stdin, pair.stdout), pair)
    kept = list(examples.values())[:MAX_EXAMPLES]
    return CodeExamples(
        examples=tuple(kept),
        io=tuple(list(pairs.values())[: MAX_EXAMPLES - len(kept)]),
        functions=tuple(dict.fromkeys(functions)),
        prelude=tuple(dict.fromkeys(prelude)),
    )


def _doctests(lines: Sequence[str]) -> Iterable[Example]:
    index = 0
    while index < len(lines):
        match = _DOCTEST.match(lines[index])
        index += 1
        if match is None:
            continue
        indent = match["indent"]
        source = [match["source"] or ""]
        continuation = re.compile(rf"^{re.escape(indent)}\.\.\.(?: (.*))?$")
        while index < len(lines) and (more := continuation.match(lines[index])):
            source.append(more[1] or "")
            index += 1
        want: list[str] = []
        while index < len(lines) and _is_output(lines[index]):
            line = lines[index]
            want.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        example = _doctest("\n".join(source) + "\n", "".join(f"{line}\n" for line in want))
        if example is not None:
            yield example


def _doctest(source: str, want: str) -> Example | None:
    """The example as written, with two readings of what docstrings mean rather than say: an
    expression whose output is a literal is compared by value (``'21'`` is ``"21"``, ``15`` is
    ``15.0``), and a comparison with no output stated is expected to hold (``>>> f(1) == 2``).
    Any other expression with no output stated is no example."""
    if not _compiles(source, "single"):
        return None
    try:
        expression: ast.expr | None = ast.parse(source, mode="eval").body
    except SyntaxError:
        expression = None  # a statement: run as written
    if expression is None:
        return Example(source, want)
    written = ast.unparse(expression)  # without the comments a doctest line may carry
    if not want:
        return Example(f"{written}\n", "True\n") if isinstance(expression, ast.Compare) else None
    value = _literal(want)
    if value is None:
        return Example(source, want)
    return Example(f"({written}) == ({value})\n", "True\n")


def _is_output(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith((">>>", *_DOCSTRING_ENDS))


def _assertion(line: str) -> Example | None:
    statement = line.strip()
    if not statement.startswith("assert ") or not _compiles(statement, "exec"):
        return None
    node = ast.parse(statement).body[0]
    called = {
        n.func.id
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    if not called or names - called - _BUILTINS:
        return None
    return Example(statement + "\n", "")


def _call_and_result(line: str, builtin: frozenset[str] | set[str]) -> Example | None:
    line = line.strip()
    if len(line) > _LINE_CHARS or ">>>" in line or line.startswith("def "):
        return None
    if line.startswith("assert "):  # ``assert f(x) => y`` is no Python, yet an example
        line = line[len("assert ") :]
    for start in _CALL_START.finditer(line):
        end = _closing_paren(line, start.end() - 1)
        if end is None:
            continue
        result = _RESULT.match(line, end + 1)
        if result is None:
            continue
        if start[0][:-1] in builtin:
            continue
        call = _literal_call(line[start.start() : end + 1])
        value = _literal(result["value"])
        if call is not None and value is not None:
            return Example(f"({call}) == ({value})\n", "True\n")
    return None


def _closing_paren(text: str, opening: int) -> int | None:
    """The index of the parenthesis closing the one at ``opening``, skipping string literals."""
    depth = 0
    quote = ""
    index = opening
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index if char == ")" else None
        index += 1
    return None


def _literal(source: str) -> str | None:
    """``source`` as Python source when it is one literal value (JSON's true/false/null
    accepted), else None."""
    source = source.strip().strip("`").strip()
    try:
        node = _with_json_names(ast.parse(source, mode="eval").body)
        ast.literal_eval(node)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None
    return ast.unparse(node)


def _literal_call(source: str) -> str | None:
    """``name(args)`` as Python source when every argument is a literal, else None."""
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    arguments = [*node.args, *(k.value for k in node.keywords)]
    if any(k.arg is None for k in node.keywords) or not _all_literal(arguments):
        return None
    return ast.unparse(_with_json_names(node))


def _all_literal(nodes: Sequence[ast.expr]) -> bool:
    try:
        for node in nodes:
            ast.literal_eval(_with_json_names(node))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _with_json_names(node: ast.expr) -> ast.expr:
    """``true``, ``false`` and ``null`` written as Python constants (in place)."""

    class Names(ast.NodeTransformer):
        def visit_Name(self, name: ast.Name) -> ast.AST:
            if name.id in _JSON_NAMES:
                return ast.copy_location(ast.Constant(_JSON_NAMES[name.id]), name)
            return name

    fixed = Names().visit(node)
    assert isinstance(fixed, ast.expr)
    return ast.fix_missing_locations(fixed)


def _io_pairs(lines: Sequence[str]) -> Iterable[IOExample]:
    index = 0
    while index < len(lines):
        start = _INPUT.match(lines[index])
        index += 1
        if start is None:
            continue
        stdin = [start["rest"]]
        while index < len(lines) and not _OUTPUT.match(lines[index]):
            if _INPUT.match(lines[index]) or len(stdin) > _IO_LINES:
                break
            stdin.append(lines[index])
            index += 1
        if index >= len(lines) or not (end := _OUTPUT.match(lines[index])):
            continue
        index += 1
        stdout = [end["rest"]]
        while index < len(lines) and len(stdout) <= _IO_LINES:
            line = lines[index]
            ended = _IO_END.match(line) or line.strip().startswith(_DOCSTRING_ENDS)
            if ended or _INPUT.match(line) or (not line.strip() and _content(stdout)):
                break
            stdout.append(line)
            index += 1
        given, expected = _content(stdin), _content(stdout)
        if given and expected:
            yield _io_example(given, expected)


def _content(lines: Sequence[str]) -> str:
    """The lines without fence lines, surrounding blank lines and inline backticks."""
    kept = [line.rstrip() for line in lines if not _FENCE_LINE.match(line)]
    text = "\n".join(kept).strip("\n")
    return text.strip("`").strip() if "\n" not in text else text


def _io_example(given: str, expected: str) -> IOExample:
    args = value = None
    if "\n" not in given and "\n" not in expected:
        call = _literal_call(f"_f({_positional(given)})")
        value = _literal(expected)
        if call is not None and value is not None:
            args = call[len("_f(") : -1]
    return IOExample(given + "\n", expected, args, value if args is not None else None)


def _positional(given: str) -> str:
    """``a = 1, b = [2]`` as ``1, [2]`` (an example's names need not be the candidate's)."""
    try:
        node = ast.parse(f"_f({given})", mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return given
    if not isinstance(node, ast.Call):
        return given
    return ", ".join(ast.unparse(a) for a in [*node.args, *(k.value for k in node.keywords)])


def _python_sources(text: str) -> Iterable[str]:
    blocks = [m["body"] for m in _FENCED.finditer(text) if m["lang"].lower() in _PYTHON_FENCES]
    return blocks or [text]


def _definitions(code: str, prelude: list[str], functions: list[str]) -> None:
    """Append ``code``'s imports and top-level definitions (verbatim) and its function names."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return
    lines = code.splitlines()
    for node in tree.body:
        if isinstance(node, _PRELUDE):
            decorated = getattr(node, "decorator_list", [])
            first = min([node.lineno, *(d.lineno for d in decorated)])
            prelude.append("\n".join(lines[first - 1 : node.end_lineno]))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(node.name)


def _compiles(source: str, mode: str) -> bool:
    try:
        compile(source, "<example>", mode, dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True
