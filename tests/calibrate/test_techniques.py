"""Selection techniques calibrated on a scripted model: the samples made once per question in
one batch, every variant (sizes, checks on and off, best_of and vote) selecting among the same
answers through ``select`` itself, the rule that decided each question, the oracle, the paired
gains, and ``--resume`` reusing samples and selections."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from proxy.backends.base import Completion, Likelihood, Message, Sampler, SamplingParams
from proxy.backends.scripted import ScriptedBackend
from proxy.calibrate.questions import Question, load_questions
from proxy.calibrate.results import to_json
from proxy.calibrate.runner import CalibrationSettings, calibrate
from proxy.calibrate.samples import ReplayMismatch, SampleRecord, replay
from proxy.calibrate.scores import Calibration, TechniqueCell
from proxy.calibrate.selections import SelectionSettings
from proxy.calibrate.store import RunStore
from proxy.calibrate.techniques import technique_table
from proxy.results import Usage
from routing.policy import Policy
from routing.policy_loader import load_policy

POLICY = Path(__file__).parent / "policies" / "techniques.yaml"

CODING_PROMPT = (
    "Complete the function.\n\n```python\ndef add(a, b):\n"
    '    """The sum of a and b.\n    >>> add(2, 3)\n    5\n    """\n```'
)
QUESTIONS = [
    {
        "question_id": "c1",
        "category": "coding",
        "turns": [CODING_PROMPT],
        "grader": {
            "type": "python_tests",
            "entry_point": "add",
            "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n"
            "    assert candidate(-1, 1) == 0\n",
        },
    },
    {
        "question_id": "m1",
        "category": "math",
        "turns": ["What is two plus two?"],
        "grader": {"type": "numeric", "answer": 4},
    },
]


def code(body: str) -> str:
    return f"```python\ndef add(a, b):\n    return {body}\n```"


DRAFTS = [code("a - b"), "5"]
# c1: wrong, passes the prompt's example only (fails the hidden test), right;
# m1: two of three say 4.
SAMPLES = [code("a * b"), code("5"), code("a + b"), "4", "It is 4.", "3"]
LIKELIHOODS = {code("5"): -2.0, code("a + b"): -1.0}


class BatchModel(ScriptedBackend):
    """Scripted drafts (``complete``), samples made in batches (``sample``: the next ``k``
    of ``samples``, each call recorded with its settings), likelihoods from a table."""

    def __init__(self, drafts: Sequence[str], samples: Sequence[str]) -> None:
        super().__init__("alpha", drafts)
        self.samples = list(samples)
        self.batches: list[tuple[SamplingParams, int]] = []
        self.scored: list[str] = []

    async def sample(
        self, messages: Sequence[Message], params: SamplingParams, k: int
    ) -> list[Completion]:
        if len(self.samples) < k:
            raise AssertionError("no scripted sample left")
        self.batches.append((params, k))
        made, self.samples = self.samples[:k], self.samples[k:]
        return [Completion(text, "stop", Usage(20, 5)) for text in made]

    async def likelihood(self, messages: Sequence[Message], answer: str) -> Likelihood:
        self.scored.append(answer)
        return Likelihood(LIKELIHOODS[answer], 4, Usage(24, 0))


@pytest.fixture
def policy() -> Policy:
    return load_policy(POLICY)


@pytest.fixture
def questions(tmp_path: Path, policy: Policy) -> list[Question]:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return load_questions(
        path, tasks=list(policy.tasks), default_task=policy.default_task, tasks_map={}
    )


async def run(
    policy: Policy,
    questions: list[Question],
    model: ScriptedBackend,
    store: RunStore,
    *,
    samples: tuple[int, ...] = (2, 4),
    resume: bool = False,
) -> Calibration:
    settings = CalibrationSettings(
        rounds=0, seed=0, resume=resume, selection=SelectionSettings(samples)
    )
    return await calibrate(policy, questions, {"alpha": model}, None, store, settings)


def technique_cell(
    result: Calibration, task: str, technique: str, k: int, checks: bool
) -> TechniqueCell | None:
    found = [
        c
        for c in result.techniques
        if (c.task, c.technique, c.k, c.checks) == (task, technique, k, checks)
    ]
    return found[0] if found else None


def decided(
    result: Calibration, task: str, technique: str, k: int, checks: bool = True
) -> dict[str, object]:
    cell = technique_cell(result, task, technique, k, checks)
    assert cell is not None
    return {"graded": cell.graded, "rules": cell.rules(), "made": cell.samples_made}


@pytest.mark.slow
async def test_every_variant_selects_among_the_same_samples(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    model = BatchModel(DRAFTS, SAMPLES)
    result = await run(policy, questions, model, RunStore(tmp_path))

    # One batch per question, of the largest size's samples, drawn as a request's would be:
    # selection's temperature, the next seed, the model's defaults, the task's answer length.
    assert [(p.temperature, p.seed, p.top_p, p.max_tokens, k) for p, k in model.batches] == [
        (0.7, 1, 0.9, 200, 3),
        (0.7, 1, 0.9, 50, 3),
    ]
    assert [(c.params.temperature, c.params.top_p) for c in model.calls] == [(0.0, 0.9)] * 2
    assert result.samples_made == 6

    # best_of at 2 sees the draft and one failing sample; at 4 two samples pass the prompt's
    # example and the likelier one (the right one) wins; without checks the draft stays.
    assert decided(result, "coding", "best_of", 2) == {
        "graded": (("c1", 0.0),),
        "rules": {"draft": 1},
        "made": (2,),
    }
    assert decided(result, "coding", "best_of", 4) == {
        "graded": (("c1", 10.0),),
        "rules": {"likelihood": 1},
        "made": (4,),
    }
    assert decided(result, "coding", "best_of", 4, checks=False)["rules"] == {"draft": 1}
    assert sorted(model.scored) == sorted(LIKELIHOODS)
    # vote: no two of the first two math answers agree; of four, two say 4.
    assert decided(result, "math", "vote", 2)["rules"] == {"draft": 1}
    assert decided(result, "math", "vote", 4) == {
        "graded": (("m1", 10.0),),
        "rules": {"agreement": 1},
        "made": (4,),
    }
    # A math question carries no check: best_of answers with the draft and makes no sample.
    assert decided(result, "math", "best_of", 4) == {
        "graded": (("m1", 0.0),),
        "rules": {"draft": 1},
        "made": (1,),
    }
    oracle = technique_cell(result, "coding", "any", 4, False)
    assert oracle is not None
    assert oracle.graded == (("c1", 10.0),)

    cell = technique_cell(result, "coding", "best_of", 4, True)
    assert cell is not None
    gain = result.technique_gain(cell)
    assert gain is not None
    assert (gain.n, gain.mean, gain.better, gain.worse) == (1, 10.0, 1, 0)
    assert set(result.technique_tables()["alpha"]) == {"coding", "math"}

    data = to_json(result, questions, wall_s=1.0)
    best = next(
        t
        for t in data["techniques"]
        if (t["task"], t["technique"], t["k"], t["checks"]) == ("coding", "best_of", 4, True)
    )
    assert best["selected_by"] == {"c1": "likelihood"}
    assert best["grades"] == {"c1": 10.0}
    assert (best["gain"]["mean"], best["mean_samples"]) == (10.0, 4.0)
    assert data["samples_made"] == 6
    assert set(data["seconds"]) == {"alpha coding", "alpha math"}

    shown = technique_table(result, ablation=False)
    assert "coding  alpha  best_of    4  on      1  10.00" in shown
    assert "likelihood 1" in shown
    ablation = technique_table(result, ablation=True)
    assert "best_of    4  off" in ablation
    assert "any" in ablation
    assert "vote" not in ablation


@pytest.mark.slow
async def test_resume_reuses_samples_and_selections(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    first = await run(policy, questions, BatchModel(DRAFTS, SAMPLES), RunStore(tmp_path))
    silent = BatchModel([], [])  # any model call would fail the test
    again = await run(policy, questions, silent, RunStore(tmp_path), resume=True)
    assert silent.calls == []
    assert silent.batches == []
    assert silent.scored == []
    assert again.techniques == first.techniques
    assert again.samples_made == 0


async def test_a_larger_size_makes_the_samples_again(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    await run(policy, questions[1:], BatchModel(["5"], ["4"]), store, samples=(2,))
    model = BatchModel([], SAMPLES[3:])
    result = await run(policy, questions[1:], model, store, samples=(2, 4), resume=True)
    assert [k for _, k in model.batches] == [3]
    assert decided(result, "math", "vote", 4)["rules"] == {"agreement": 1}


async def test_without_sizes_the_policy_lists_decide(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    model = BatchModel(DRAFTS, SAMPLES[3:])
    result = await run(policy, questions, model, RunStore(tmp_path), samples=())
    # Only math lists a technique (vote at 4); coding's plain list lists none.
    assert [k for _, k in model.batches] == [3]
    assert {(c.task, c.technique, c.k) for c in result.techniques} == {
        ("math", "vote", 4),
        ("math", "any", 4),
    }


async def test_a_backend_that_cannot_batch_is_asked_sample_by_sample(
    policy: Policy, questions: list[Question], tmp_path: Path
) -> None:
    model = ScriptedBackend("alpha", ["5", "4", "It is 4.", "3"])
    result = await run(policy, questions[1:], model, RunStore(tmp_path), samples=(4,))
    samples = model.calls[1:]
    assert [(c.params.temperature, c.params.seed) for c in samples] == [
        (0.7, 1),
        (0.7, 2),
        (0.7, 3),
    ]
    assert decided(result, "math", "vote", 4)["rules"] == {"agreement": 1}


async def test_a_replay_refuses_samples_drawn_otherwise() -> None:
    record = SampleRecord()
    source = replay(BatchModel([], ["a", "b"]), "draft", record)
    assert isinstance(source, Sampler)
    params = SamplingParams(temperature=0.7, seed=1)
    assert [c.text for c in await source.sample([], params, 2)] == ["a", "b"]
    assert [c.text for c in await source.sample([], params, 1)] == ["a"]
    with pytest.raises(ReplayMismatch):
        await source.sample([], params.replace(temperature=0.9), 2)
