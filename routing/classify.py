"""The keyword classifier: the task whose keywords occur most often in the text.

Keywords match as whole words (not inside a longer word), case-insensitively; a keyword of
several words matches them separated by any whitespace. Every occurrence counts. Ties go to the
task declared first in the policy file; no match at all gives None.
"""

from __future__ import annotations

from routing.policy import Policy
from routing.policy_index import index_of


def classify_task(policy: Policy, text: str) -> str | None:
    """The task with the most keyword occurrences in ``text``, or None when none occurs."""
    best: str | None = None
    best_count = 0
    for name, task in index_of(policy).tasks.items():
        if task.pattern is None:
            continue
        count = len(task.pattern.findall(text))
        if count > best_count:
            best, best_count = name, count
    return best
