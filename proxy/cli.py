"""The ``perfics`` command line.

    perfics serve [--policy FILE] [--host H] [--port N] [--log-level L] [--queue-size N]
    perfics route --policy FILE [--task T] [--budget-usd B] [--max-rounds R] [--max-samples K]
                  [--prompt-tokens N | --prompt TEXT] [--max-tokens M] [--model M]
                  [--uses CAP,...] [--json | --explain]
    perfics policy check FILE
    perfics keys create|list|update|rotate|revoke ...   (proxy/keys_cli.py)
    perfics spend [--by key|task|model|day] [--since DATE] [--format table|csv|json]

Exit status: 0 success; 2 invalid policy or usage; 3 no possible plan (any routing error:
budget too small, unknown task or model, invalid value). Errors go to stderr.

Subcommands come from ``SUBCOMMANDS``: name -> (``"module:function"``, one-line help). The
function adds the command's parser to the subparsers and sets ``handler`` (``args -> exit
status``) as a default. A new command (calibrate, report, bench) lives in its own module and
adds one entry here. Only the module of the command being run is imported; the others appear
in ``perfics --help`` through their one-line help.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_NO_PLAN = 3

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("proxy.cli:add_serve", "run the proxy"),
    "route": ("proxy.cli:add_route", "print the plan the proxy would make, calling no model"),
    "policy": ("proxy.cli:add_policy", "work with policy files (policy check FILE)"),
    "calibrate": (
        "proxy.calibrate.cli:add_calibrate_parser",
        "measure each model's quality per task and round count",
    ),
    "keys": ("proxy.keys_cli:add_keys_parser", "make, list, change, rotate and revoke API keys"),
    "spend": ("proxy.keys_cli:add_spend_parser", "spend and saving from the ledger"),
    "report": (
        "proxy.calibrate.cli:add_report_parser",
        "chart quality against cost and refinement gain per task",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Run ``perfics`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(arguments))
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, or a usage error already reported by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_INVALID
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    return handler(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``perfics`` parser, with the full parser of ``command`` (imported from its module)
    and a one-line placeholder for every other command."""
    parser = argparse.ArgumentParser(
        prog="perfics",
        description="OpenAI-compatible proxy that routes by PeRFICS score and self-refines.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (target, summary) in SUBCOMMANDS.items():
        if name != command:
            subparsers.add_parser(name, help=summary)
            continue
        module_name, _, function_name = target.partition(":")
        builder: Callable[[Subparsers], None] = getattr(
            importlib.import_module(module_name), function_name
        )
        builder(subparsers)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: its first argument not an option (the top-level parser
    has no option taking a value)."""
    return next((argument for argument in argv if not argument.startswith("-")), None)


def add_serve(subparsers: Subparsers) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the proxy",
        description="Run the proxy. Flags not given fall back to PERFICS_* variables.",
    )
    serve.add_argument("--policy", help="policy file (PERFICS_POLICY; policies/default.yaml)")
    serve.add_argument("--host", help="bind address (PERFICS_HOST; 127.0.0.1)")
    serve.add_argument("--port", type=_non_negative_int, help="port (PERFICS_PORT; 8000)")
    serve.add_argument("--log-level", help="debug, info, warning (PERFICS_LOG_LEVEL; info)")
    serve.add_argument(
        "--queue-size",
        type=_positive_int,
        help="requests that may wait per embedded model (PERFICS_QUEUE_SIZE; 16)",
    )
    serve.add_argument(
        "--database",
        help="key and ledger store, sqlite:///PATH or postgresql://... (PERFICS_DATABASE_URL; "
        "the policy's server.database; sqlite:///.perfics/perfics.db)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        help="processes serving the port, sharing the store (PERFICS_WORKERS; 1)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from proxy.multiproc import metrics_directory
    from proxy.settings import Settings

    try:
        workers = Settings.from_env(workers=args.workers).workers
    except ValueError as exc:
        print(f"perfics: {exc}", file=sys.stderr)
        return EXIT_INVALID
    with metrics_directory(workers):
        from proxy.server import serve

        return serve(
            policy=args.policy,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            queue_size=args.queue_size,
            database_url=args.database,
            workers=args.workers,
        )


def add_route(subparsers: Subparsers) -> None:
    route = subparsers.add_parser(
        "route",
        help="print the plan the proxy would make, without calling any model",
        description=(
            "Print the plan (model, technique, rounds or samples, score, estimated cost) for a "
            "request. --task, --budget-usd, --max-rounds and --max-samples count as declared "
            "by header; --prompt goes to the keyword classifier. Exit 3 when no plan is "
            "possible."
        ),
    )
    route.add_argument("--policy", required=True, help="policy file")
    route.add_argument("--task", help="declared task (as X-Perfics-Task)")
    route.add_argument("--budget-usd", help="budget in USD per request (as X-Perfics-Budget-Usd)")
    route.add_argument("--max-rounds", help="cap on refinement rounds (as X-Perfics-Max-Rounds)")
    route.add_argument(
        "--max-samples",
        help="cap on samples to select from, best_of and vote (as X-Perfics-Max-Samples)",
    )
    prompt = route.add_mutually_exclusive_group()
    prompt.add_argument("--prompt-tokens", type=_non_negative_int, help="prompt size in tokens")
    prompt.add_argument("--prompt", help="prompt text: estimated, and classified when no task")
    route.add_argument("--max-tokens", type=_positive_int, help="the request's max_tokens")
    route.add_argument("--model", default="auto", help="auto, an alias or a model id (auto)")
    route.add_argument(
        "--uses",
        type=_capabilities,
        default=frozenset(),
        help="capabilities the request uses, comma-separated: tools, json_schema, logprobs, "
        "vision (models without them are not candidates)",
    )
    output = route.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    output.add_argument("--explain", action="store_true", help="print every candidate")
    route.set_defaults(handler=_route)


def _route(args: argparse.Namespace) -> int:
    from routing.cost import format_usd
    from routing.decision import decide
    from routing.errors import PolicyError, RoutingError
    from routing.explain import plan_to_json, plan_to_table
    from routing.hypothetical import hypothetical_facts
    from routing.planner import spending
    from routing.policy_loader import load_policy

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    facts = hypothetical_facts(
        task=args.task,
        budget_usd=args.budget_usd,
        max_rounds=args.max_rounds,
        max_samples=args.max_samples,
        prompt=args.prompt,
        prompt_tokens=args.prompt_tokens,
        max_tokens=args.max_tokens,
        model=args.model,
        needs=args.uses,
    )
    try:
        decision = decide(policy, facts)
    except RoutingError as exc:
        print(f"perfics route: {exc.message}", file=sys.stderr)
        return EXIT_NO_PLAN
    chosen, declarations = decision.plan, decision.declarations
    if args.json:
        print(json.dumps(plan_to_json(chosen, declarations)))
    elif args.explain:
        print(
            plan_to_table(
                chosen,
                policy,
                task_source=declarations.task_source,
                budget_usd=declarations.budget_usd,
                max_rounds=declarations.max_rounds,
                max_samples=declarations.max_samples,
            )
        )
    else:
        print(
            f"{chosen.model}, {spending(chosen)}, task {chosen.task} "
            f"({declarations.task_source}), score {chosen.score:.4f}, "
            f"estimated {format_usd(chosen.estimated_cost_usd)} USD"
        )
    return EXIT_OK


def add_policy(subparsers: Subparsers) -> None:
    policy = subparsers.add_parser("policy", help="work with policy files")
    actions = policy.add_subparsers(title="actions", metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a policy file",
        description=(
            "Validate FILE. Exit 2 listing every problem as FILE:LINE: field.path: message."
        ),
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=_policy_check)
    policy.set_defaults(handler=lambda _: _usage(policy))


def _policy_check(args: argparse.Namespace) -> int:
    from routing.errors import PolicyError
    from routing.policy_loader import load_policy

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.file}: ok ({len(policy.models)} models, {len(policy.tasks)} tasks)")
    return EXIT_OK


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_INVALID


def _capabilities(text: str) -> frozenset[str]:
    from routing.backend_options import CAPABILITIES

    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(names - set(CAPABILITIES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(unknown)}; known: {', '.join(CAPABILITIES)}"
        )
    return names


def _non_negative_int(text: str) -> int:
    return _bounded_int(text, 0)


def _positive_int(text: str) -> int:
    return _bounded_int(text, 1)


def _bounded_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
