"""Extracting the code examples a prompt states: each form found, and prose that looks like an
example but is not one left alone. Pure: nothing runs here (``test_checks.py`` runs them)."""

from __future__ import annotations

import pytest

from proxy.selection.examples import Example, IOExample, extract_examples

HUMANEVAL_STYLE = '''Complete the following Python function.

```python
from typing import List


def below_zero(operations: List[int]) -> bool:
    """ Detect whether the balance falls below zero.
    >>> below_zero([1, 2, 3])
    False
    >>> below_zero([1, 2, -4,
    ...             5])
    True
    >>> below_zero([]) == False
    >>> sorted_pair = below_zero
    """
```
'''


def test_doctest_lines_with_their_outputs_and_continuations() -> None:
    found = extract_examples([HUMANEVAL_STYLE])
    assert found.examples == (
        Example("(below_zero([1, 2, 3])) == (False)\n", "True\n"),
        Example("(below_zero([1, 2, -4, 5])) == (True)\n", "True\n"),
        # A comparison with no output stated is expected to hold.
        Example("below_zero([]) == False\n", "True\n"),
        # A statement runs as written (it must print nothing and raise nothing).
        Example("sorted_pair = below_zero\n", ""),
    )
    assert found.functions == ("below_zero",)
    assert found.prelude[0] == "from typing import List"
    assert found.prelude[1].startswith("def below_zero(operations: List[int]) -> bool:")


def test_an_output_that_is_no_literal_is_compared_as_doctest_prints_it() -> None:
    found = extract_examples([">>> show(3)\nthree things\n\n>>> show(0)\nTraceback (most recent"])
    assert found.examples[0] == Example("show(3)\n", "three things\n")
    assert found.examples[1].want.startswith("Traceback")


def test_an_expression_with_no_output_and_no_comparison_is_no_example() -> None:
    assert extract_examples([">>> sort_array([1, 0]) [0, 1]\n"]).examples == ()


@pytest.mark.parametrize(
    ("line", "source"),
    [
        ("add(2, 3) == 5", "(add(2, 3)) == (5)"),
        ("    choose_num(12, 15) = 14", "(choose_num(12, 15)) == (14)"),
        ("* eat(5, 6, 10) -> [11, 4]", "(eat(5, 6, 10)) == ([11, 4])"),
        ('digitSum("abAB") => 131', "(digitSum('abAB')) == (131)"),
        ("iscube(-1) ==> True", "(iscube(-1)) == (True)"),
        ("will_it_fly([3, 2, 3], 9) ➞ True", "(will_it_fly([3, 2, 3], 9)) == (True)"),
        ("f(1) → 2", "(f(1)) == (2)"),
        ("multiply(148, 412) should return 16.", "(multiply(148, 412)) == (16)"),
        ("is_simple_power(1, 4) => true", "(is_simple_power(1, 4)) == (True)"),
        ("find(null) returns None", "(find(None)) == (None)"),
        ("for x_or_y(7, 34, 12) == 34", "(x_or_y(7, 34, 12)) == (34)"),
        ('assert list_sort(["aa", "a"]) => ["aa"]', "(list_sort(['aa', 'a'])) == (['aa'])"),
        (
            "bf('Earth', key={'a': (1, 2)}) == ('Venus',)",
            "(bf('Earth', key={'a': (1, 2)})) == (('Venus',))",
        ),
    ],
)
def test_a_call_and_its_stated_result(line: str, source: str) -> None:
    assert extract_examples([line]).examples == (Example(source + "\n", "True\n"),)


@pytest.mark.parametrize(
    "line",
    [
        "def f(x) -> int:",
        "f(x) -> int",  # a signature, not an example: x is no value
        "double_the_difference([1, 3, 2, 0]) == 1 + 9 + 0 + 0 = 10",
        "alphabet, ord('a') = 0, ord('b') = 1, ... ord('z') = 25",  # a builtin explained
        "is_happy(a) => False",
        "Call f(1) and see.",
        "print(f(1)) == 1",  # a builtin, not the prompt's function
    ],
)
def test_prose_that_only_looks_like_an_example(line: str) -> None:
    assert extract_examples([line]).examples == ()


def test_a_builtin_name_is_an_example_where_the_prompt_defines_it() -> None:
    found = extract_examples(["```python\ndef max(xs):\n    pass\n```\nmax([1, 3]) == 3"])
    assert found.examples == (Example("(max([1, 3])) == (3)\n", "True\n"),)


def test_assert_lines_that_test_calls() -> None:
    text = "Examples:\nassert add(2, 3) == 5\nassert len(add('a', 'b')) == 2\n    assert x > 0\n"
    found = extract_examples([text])
    assert found.examples == (
        Example("assert add(2, 3) == 5\n", ""),
        Example("assert len(add('a', 'b')) == 2\n", ""),
    )


def test_input_output_pairs_read_as_arguments() -> None:
    text = (
        "Example 1:\n\nInput: nums = [2,7,11,15], target = 9\nOutput: [0,1]\n"
        "Explanation: because nums[0] + nums[1] == 9.\n\n"
        '**Input:** `"abc"`\n**Output:** `true`\n'
    )
    found = extract_examples([text])
    assert found.io == (
        IOExample("nums = [2,7,11,15], target = 9\n", "[0,1]", "[2, 7, 11, 15], 9", "[0, 1]"),
        IOExample('"abc"\n', "true", "'abc'", "True"),
    )


def test_an_input_that_is_a_call_is_a_call_and_result_example() -> None:
    text = (
        "Write group_sizes(words).\n\nInput: group_sizes(['hi', 'cat'])\n"
        "Output: {2: 1, 3: 1}\nInput: group_sizes([])\nOutput: {}\n"
        "Input: len('ab')\nOutput: 2\n"
    )
    found = extract_examples([text])
    assert found.examples == (
        Example("(group_sizes(['hi', 'cat'])) == ({2: 1, 3: 1})\n", "True\n"),
        Example("(group_sizes([])) == ({})\n", "True\n"),
    )
    # A builtin's call explains the prompt rather than testing the answer: it stays a pair.
    assert found.io == (IOExample("len('ab')\n", "2", None, None),)


def test_input_output_pairs_for_a_program_that_reads_standard_input() -> None:
    text = (
        "Read n numbers and print their sum.\n\nSample Input\n```\n3\n1 2 3\n```\n"
        "Sample Output\n```\n6\n```\n\nInput:\n2\n5 5\nOutput:\n10\n"
    )
    found = extract_examples([text])
    assert found.io == (
        IOExample("3\n1 2 3\n", "6", None, None),
        IOExample("2\n5 5\n", "10", None, None),
    )


def test_a_prompt_that_asks_for_a_function_keeps_only_pairs_it_can_call() -> None:
    text = (
        "```python\ndef total(xs):\n    pass\n```\n"
        "Input: [1, 2]\nOutput: 3\n\nInput:\n1 2\nOutput:\n3\n"
    )
    assert extract_examples([text]).io == (IOExample("[1, 2]\n", "3", "[1, 2]", "3"),)


def test_duplicates_count_once_and_the_number_is_bounded() -> None:
    text = "add(1, 1) == 2\n" * 3 + "".join(f"add({i}, 0) == {i}\n" for i in range(200))
    found = extract_examples([text, "add(1, 1) == 2"])
    assert found.examples[0] == Example("(add(1, 1)) == (2)\n", "True\n")
    assert found.count == 64


def test_no_examples_in_plain_prose() -> None:
    found = extract_examples(["What is the capital of France? Input is welcome."])
    assert found.count == 0
    assert found.prelude == ()
