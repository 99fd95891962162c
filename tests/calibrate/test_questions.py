"""The question file format, category -> task mapping, and the shipped question set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from proxy.calibrate.questions import (
    QuestionsError,
    default_questions_path,
    limit_per_task,
    load_questions,
    load_tasks_map,
    task_for,
)

TASKS = ["general", "coding", "math", "creative"]


def write_lines(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_category_mapping_order() -> None:
    mapping = {"writing": "creative", "math": "general"}
    assert task_for("writing", tasks=TASKS, default_task="general", mapping=mapping) == "creative"
    assert task_for("math", tasks=TASKS, default_task="general", mapping=mapping) == "general"
    assert task_for("coding", tasks=TASKS, default_task="general", mapping=mapping) == "coding"
    assert task_for("roleplay", tasks=TASKS, default_task="general", mapping=mapping) == "general"


def test_load_uses_the_first_turn_and_joins_references(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["one", "two"]},
            {"question_id": "m1", "category": "math", "turns": ["2+2?"], "reference": ["4", "!"]},
            {"question_id": 3, "category": "stem", "turns": ["why?"], "reference": []},
        ],
    )
    questions = load_questions(
        path, tasks=TASKS, default_task="general", tasks_map={"writing": "creative"}
    )
    assert [(q.question_id, q.task, q.prompt) for q in questions] == [
        ("81", "creative", "one"),
        ("m1", "math", "2+2?"),
        ("3", "general", "why?"),
    ]
    assert [q.reference for q in questions] == [None, "4\n!", None]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", ":2: not JSON"),
        ('{"question_id": 2, "category": "math"}', ":2: turns: Field required"),
        ('{"question_id": 2, "category": "math", "turns": []}', ":2: turns:"),
        ('{"question_id": 1, "category": "math", "turns": ["x"]}', ":2: duplicate question_id 1"),
        ('{"question_id": 2, "category": "poems", "turns": ["x"]}', "task 'nope'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "category": "math", "turns": ["x"]}\n' + line + "\n")
    with pytest.raises(QuestionsError, match=message.replace("(", r"\(")) as caught:
        load_questions(path, tasks=TASKS, default_task="general", tasks_map={"poems": "nope"})
    assert str(path) in str(caught.value)


def test_tasks_map_reads_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("writing: creative  # prose\nreasoning: math\n")
    (tmp_path / "m.json").write_text('{"writing": "creative"}')
    assert load_tasks_map(tmp_path / "m.yaml") == {"writing": "creative", "reasoning": "math"}
    assert load_tasks_map(tmp_path / "m.json") == {"writing": "creative"}
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(QuestionsError, match="mapping"):
        load_tasks_map(tmp_path / "bad.yaml")


def test_limit_per_task_keeps_file_order(tmp_path: Path) -> None:
    questions = load_questions(
        default_questions_path(), tasks=TASKS, default_task="general", tasks_map={}
    )
    kept = limit_per_task(questions, 2)
    assert Counter(q.task for q in kept) == dict.fromkeys(TASKS, 2)
    assert kept == [q for q in questions if q in kept]


def test_shipped_set_covers_every_task_with_references_for_math_and_coding() -> None:
    questions = load_questions(
        default_questions_path(), tasks=TASKS, default_task="general", tasks_map={}
    )
    per_task = Counter(q.task for q in questions)
    assert set(per_task) == set(TASKS)
    assert min(per_task.values()) >= 4
    for question in questions:
        if question.task in {"math", "coding"}:
            assert question.reference, question.question_id
        assert len(question.prompt) < 400
