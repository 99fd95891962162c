"""``perfics keys`` and ``perfics spend``: keys and the spend ledger, straight from the store
(the proxy need not run; running proxies see a change within a second).

    perfics keys create --name NAME [--budget-usd X --period day|week|month|total] [--rpm N]
                        [--tpm N] [--models a,b] [--tasks t,u] [--max-rounds R] [--max-samples K]
                        [--expires DATE]                      prints the secret, once
    perfics keys list [--json]
    perfics keys update KEY [--name N] [limits as above] [--clear budget_usd,rpm,...]
    perfics keys rotate KEY                                    prints the new secret, once
    perfics keys revoke KEY
    perfics spend [--by key|task|model|day] [--since DATE] [--format table|csv|json]

KEY is a key's id or name. The store: ``--database``, else ``PERFICS_DATABASE_URL``, else the
``server.database`` of ``--policy`` (default policies/default.yaml), else
sqlite:///.perfics/perfics.db. Exit status 0, 2 on bad input or an unreachable store.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from proxy.keys import (
    InvalidKeyInput,
    KeyLimits,
    create_key,
    key_view,
    parse_expiry,
    revoke_key,
    rotate_key,
    update_key,
)
from proxy.store.base import KeyConflict, Store, StoreUnavailable
from proxy.store.connect import database_url, open_store, upgrade
from routing.errors import PolicyError

if TYPE_CHECKING:
    from proxy.cli import Subparsers

EXIT_OK, EXIT_INVALID = 0, 2


def add_keys_parser(subparsers: Subparsers) -> None:
    keys = subparsers.add_parser("keys", help="make, list, change, rotate and revoke API keys")
    actions = keys.add_subparsers(title="actions", metavar="ACTION")
    create = actions.add_parser("create", help="a new key; prints its secret once")
    create.add_argument("--name", required=True)
    _limits(create)
    create.set_defaults(handler=lambda a: _run(a, _create))
    listing = actions.add_parser("list", help="every key with its spend (no secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=lambda a: _run(a, _list))
    update = actions.add_parser("update", help="change a key's name or limits")
    update.add_argument("key", help="id or name")
    update.add_argument("--name")
    _limits(update)
    update.add_argument("--clear", default="", help="limits to remove: budget_usd,rpm,tpm,...")
    update.set_defaults(handler=lambda a: _run(a, _update))
    for name, text in (("rotate", "a new secret; the old stops working"), ("revoke", "revoke")):
        action = actions.add_parser(name, help=text)
        action.add_argument("key", help="id or name")
        action.set_defaults(
            handler=lambda a, n=name: _run(a, _rotate if n == "rotate" else _revoke)
        )
    for parser in actions.choices.values():
        _store_options(parser)


def add_spend_parser(subparsers: Subparsers) -> None:
    spend = subparsers.add_parser("spend", help="spend and saving from the ledger")
    spend.add_argument("--by", choices=("key", "task", "model", "day"), default="key")
    spend.add_argument("--since", help="YYYY-MM-DD (UTC), inclusive")
    spend.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _store_options(spend)
    spend.set_defaults(handler=lambda a: _run(a, _spend))


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--policy", default=None, help="read server.database from it")


def _limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-usd", type=float)
    parser.add_argument("--period", choices=("day", "week", "month", "total"))
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--models", help="comma-separated model ids the key may use")
    parser.add_argument("--tasks", help="comma-separated tasks the key may be used for")
    parser.add_argument("--max-rounds", type=int, help="cap on refinement rounds")
    parser.add_argument(
        "--max-samples", type=int, help="cap on samples to select from (best_of, vote)"
    )
    parser.add_argument("--expires", help="YYYY-MM-DD (end of that day, UTC)")


def _key_limits(args: argparse.Namespace) -> KeyLimits:
    def names(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())

    clear = getattr(args, "clear", "")
    return KeyLimits(
        budget_usd=args.budget_usd,
        period=args.period,
        rpm=args.rpm,
        tpm=args.tpm,
        models=names(args.models),
        tasks=names(args.tasks),
        max_rounds=args.max_rounds,
        max_samples=args.max_samples,
        expires_at=parse_expiry(args.expires) if args.expires else None,
        clear=frozenset(n.strip() for n in clear.split(",") if n.strip()),
    ).checked()


def _database(args: argparse.Namespace) -> str:
    policy_value = None
    if not args.database and not os.environ.get("PERFICS_DATABASE_URL"):
        policy = args.policy or os.environ.get("PERFICS_POLICY") or "policies/default.yaml"
        if os.path.exists(policy):
            from routing.policy_loader import load_policy

            policy_value = load_policy(policy).server.database
    return database_url(args.database, policy_value)


def _run(
    args: argparse.Namespace, action: Callable[[Store, argparse.Namespace], Awaitable[None]]
) -> int:
    async def main() -> None:
        url = _database(args)
        await asyncio.to_thread(upgrade, url)
        store = await open_store(url)
        try:
            await action(store, args)
        finally:
            await store.aclose()

    try:
        asyncio.run(main())
    except (InvalidKeyInput, KeyConflict, StoreUnavailable, PolicyError) as exc:
        print(f"perfics: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


async def _create(store: Store, args: argparse.Namespace) -> None:
    key, secret = await create_key(store, args.name, _key_limits(args))
    print(secret)
    print(f"made key {key.id} ({key.name}); the secret above is shown only now", file=sys.stderr)


async def _update(store: Store, args: argparse.Namespace) -> None:
    key = await update_key(store, args.key, args.name, _key_limits(args))
    print(f"updated key {key.id} ({key.name})", file=sys.stderr)


async def _rotate(store: Store, args: argparse.Namespace) -> None:
    key, secret = await rotate_key(store, args.key)
    print(secret)
    print(f"rotated key {key.id} ({key.name}); the old secret no longer works", file=sys.stderr)


async def _revoke(store: Store, args: argparse.Namespace) -> None:
    key = await revoke_key(store, args.key)
    print(f"revoked key {key.id} ({key.name})", file=sys.stderr)


async def _list(store: Store, args: argparse.Namespace) -> None:
    now = time.time()
    views = [key_view(usage, now) for usage in await store.keys(now)]
    if args.json:
        print(json.dumps(views, indent=2))
        return
    columns = (
        "id",
        "name",
        "hint",
        "status",
        "budget_usd",
        "period",
        "spent_usd",
        "remaining_usd",
        "rpm",
        "tpm",
        "max_rounds",
        "max_samples",
        "models",
        "tasks",
        "expires_at",
    )
    _table(columns, [[_cell(view[c]) for c in columns] for view in views])


async def _spend(store: Store, args: argparse.Namespace) -> None:
    since = parse_expiry(args.since) - 86399 if args.since else None
    lines = await store.spend(args.by, since)
    rows: list[dict[str, Any]] = [
        {
            args.by: line.group,
            "requests": line.requests,
            "prompt_tokens": line.prompt_tokens,
            "completion_tokens": line.completion_tokens,
            "cost_usd": round(line.cost_usd, 9),
            "reference_cost_usd": (
                None if line.reference_cost_usd is None else round(line.reference_cost_usd, 9)
            ),
            "saving_usd": (
                None
                if line.reference_cost_usd is None
                else round(line.reference_cost_usd - line.cost_usd, 9)
            ),
        }
        for line in lines
    ]
    columns = (
        args.by,
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "reference_cost_usd",
        "saving_usd",
    )
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    else:
        _table(columns, [[_cell(row[c]) for c in columns] for row in rows])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> None:
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
