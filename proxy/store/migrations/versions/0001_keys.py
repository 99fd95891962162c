"""Keys, their spend per period, the leases processes hold on their budgets, and rate-limit
windows.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

# One round trip per lease on PostgreSQL: the same checks, in the same order, as
# proxy/store/sqlite.py: SqliteStore.lease. The key's row lock serialises a key's grants
# across every proxy process.
LEASE = """
CREATE FUNCTION perfics_lease(
    p_key text, p_lease text, p_process text, p_period text, p_need_usd double precision,
    p_want_usd double precision, p_declared double precision, p_window bigint,
    p_need_requests bigint, p_want_requests bigint, p_need_tokens bigint, p_want_tokens bigint,
    p_now double precision, p_ttl double precision,
    OUT verdict text, OUT left_usd double precision, OUT usd double precision,
    OUT requests bigint, OUT tokens bigint, OUT granted_requests bigint,
    OUT granted_tokens bigint
) LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    left_usd := NULL; usd := 0; granted_requests := 0; granted_tokens := 0;
    SELECT a.budget_usd, a.rpm, a.tpm, a.revoked_at, a.expires_at,
           COALESCE(s.spent_usd, 0) + COALESCE(s.reserved_usd, 0) AS used,
           COALESCE(w.requests, 0) AS window_requests, COALESCE(w.tokens, 0) AS window_tokens
        INTO k
        FROM api_keys a
        LEFT JOIN key_spend s ON s.key_id = a.id AND s.period = p_period
        LEFT JOIN rate_windows w ON w.key_id = a.id AND w.window_start = p_window
        WHERE a.id = p_key FOR UPDATE OF a;
    IF NOT FOUND THEN verdict := 'revoked'; requests := 0; tokens := 0; RETURN; END IF;
    requests := k.window_requests; tokens := k.window_tokens;
    IF k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= p_now) THEN
        verdict := 'revoked'; RETURN;
    END IF;
    IF k.budget_usd IS NOT NULL THEN left_usd := k.budget_usd - k.used; END IF;
    IF k.rpm IS NOT NULL AND requests + p_need_requests > k.rpm THEN
        verdict := 'requests'; RETURN;
    END IF;
    IF k.tpm IS NOT NULL AND tokens + p_need_tokens > k.tpm THEN
        verdict := 'tokens'; RETURN;
    END IF;
    IF left_usd IS NOT NULL AND p_declared IS NOT NULL AND p_declared > left_usd THEN
        verdict := 'declared_budget'; RETURN;
    END IF;
    IF left_usd IS NOT NULL AND p_need_usd > left_usd THEN verdict := 'budget'; RETURN; END IF;
    IF k.budget_usd IS NOT NULL AND p_want_usd > 0 THEN
        usd := LEAST(p_want_usd, left_usd);
        INSERT INTO key_spend (key_id, period, spent_usd, reserved_usd)
            VALUES (p_key, p_period, 0, usd)
            ON CONFLICT (key_id, period) DO UPDATE
            SET reserved_usd = key_spend.reserved_usd + EXCLUDED.reserved_usd;
        INSERT INTO leases (id, key_id, period, amount_usd, process, created_at, expires_at)
            VALUES (p_lease, p_key, p_period, usd, p_process, p_now, p_now + p_ttl)
            ON CONFLICT (id) DO UPDATE
            SET amount_usd = leases.amount_usd + EXCLUDED.amount_usd,
                expires_at = EXCLUDED.expires_at;
    END IF;
    IF k.rpm IS NOT NULL OR k.tpm IS NOT NULL THEN
        granted_requests := CASE WHEN k.rpm IS NULL THEN p_want_requests
                                 ELSE LEAST(p_want_requests, k.rpm - requests) END;
        granted_tokens := CASE WHEN k.tpm IS NULL THEN p_want_tokens
                               ELSE LEAST(p_want_tokens, k.tpm - tokens) END;
        INSERT INTO rate_windows (key_id, window_start, requests, tokens)
            VALUES (p_key, p_window, granted_requests, granted_tokens)
            ON CONFLICT (key_id, window_start) DO UPDATE
            SET requests = rate_windows.requests + EXCLUDED.requests,
                tokens = rate_windows.tokens + EXCLUDED.tokens;
        requests := requests + granted_requests; tokens := tokens + granted_tokens;
    END IF;
    verdict := 'ok';
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("secret_hash", sa.Text, nullable=False, unique=True),
        sa.Column("hint", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("budget_usd", sa.Float),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.BigInteger),
        sa.Column("models", sa.Text),
        sa.Column("tasks", sa.Text),
        sa.Column("max_rounds", sa.Integer),
    )
    op.create_table(
        "key_spend",
        sa.Column("key_id", sa.Text, sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("spent_usd", sa.Float, nullable=False),
        # What the leases on the key hold in the period, kept with them.
        sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.Column("process", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("leases_by_expiry", "leases", ["expires_at"])
    op.create_index("leases_by_process", "leases", ["process"])
    op.create_table(
        "rate_windows",
        sa.Column("key_id", sa.Text, sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LEASE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION perfics_lease")
    for table in ("rate_windows", "leases", "key_spend", "api_keys"):
        op.drop_table(table)
