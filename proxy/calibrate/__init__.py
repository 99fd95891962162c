"""Calibration: measure each model's judged quality per task and round count, and its speed.

questions.py      the question set (FastChat question.jsonl) and category -> task mapping
runner.py         answer through ``proxy.refine``, grade, tally (``calibrate``)
answers.py        one draft and its rounds; the answer after r rounds
judge.py          single-answer grading on 1-10, ``[[N]]`` parsed strictly, retried
scores.py         means per task, model and round count; failures
throughput.py     prefill / decode tokens per second from the draft calls
store.py          the run directory (``--resume``)
progress.py       the stderr progress bar
policy_writer.py  round-trip YAML edit of the policy, validated before writing
report.py         quality-vs-cost and refinement-gain charts, report.md
cli.py            ``perfics calibrate`` and ``perfics report``
"""
