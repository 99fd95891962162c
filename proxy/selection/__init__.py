"""Selection among samples: what tells a right answer from a wrong one without a judge.

examples.py   the code examples a prompt states (doctest, ``assert``, ``f(x) == y`` and its
              arrow and "should return" forms, ``Input: … Output: …``), extracted from text
code_check.py those examples run against a candidate's code in the calibration sandbox
checks.py     every check a request carries (``response_format``, a forced tool call, code
              examples), built once per request and run against each candidate

Nothing here imports the web stack or the pipeline: the planner and the pipeline call in.
"""
