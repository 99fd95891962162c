"""Keys, their spend per period, budget reservations and rate-limit windows.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

# One round trip per admission on PostgreSQL: the same checks, in the same order, as
# proxy/store/sqlite.py: SqliteStore.admit. The key's row lock serialises a key's admissions
# across every proxy process.
ADMIT = """
CREATE FUNCTION perfics_admit(
    p_key text, p_reservation text, p_request text, p_period text, p_amount double precision,
    p_declared double precision, p_tokens bigint, p_window bigint, p_now double precision,
    p_ttl double precision, p_model text, p_task text,
    OUT verdict text, OUT left_usd double precision, OUT requests bigint, OUT tokens bigint
) LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    requests := 0; tokens := 0; left_usd := NULL;
    SELECT a.budget_usd, a.rpm, a.tpm, a.revoked_at, a.expires_at,
           COALESCE(s.spent_usd, 0) + COALESCE(s.reserved_usd, 0) AS used,
           COALESCE(w.requests, 0) AS window_requests, COALESCE(w.tokens, 0) AS window_tokens
        INTO k
        FROM api_keys a
        LEFT JOIN key_spend s ON s.key_id = a.id AND s.period = p_period
        LEFT JOIN rate_windows w ON w.key_id = a.id AND w.window_start = p_window
        WHERE a.id = p_key FOR UPDATE OF a;
    IF NOT FOUND OR k.revoked_at IS NOT NULL
            OR (k.expires_at IS NOT NULL AND k.expires_at <= p_now) THEN
        verdict := 'revoked'; RETURN;
    END IF;
    requests := k.window_requests; tokens := k.window_tokens;
    IF k.budget_usd IS NOT NULL THEN left_usd := k.budget_usd - k.used; END IF;
    IF k.rpm IS NOT NULL AND requests + 1 > k.rpm THEN verdict := 'requests'; RETURN; END IF;
    IF k.tpm IS NOT NULL AND tokens + p_tokens > k.tpm THEN verdict := 'tokens'; RETURN; END IF;
    IF left_usd IS NOT NULL AND p_declared IS NOT NULL AND p_declared > left_usd THEN
        verdict := 'declared_budget'; RETURN;
    END IF;
    IF left_usd IS NOT NULL AND p_amount > left_usd THEN verdict := 'budget'; RETURN; END IF;
    IF k.budget_usd IS NOT NULL THEN
        INSERT INTO key_spend (key_id, period, spent_usd, reserved_usd)
            VALUES (p_key, p_period, 0, p_amount)
            ON CONFLICT (key_id, period) DO UPDATE
            SET reserved_usd = key_spend.reserved_usd + EXCLUDED.reserved_usd;
        INSERT INTO reservations (id, key_id, period, amount_usd, request_id, model, task,
                                  created_at, expires_at)
            VALUES (p_reservation, p_key, p_period, p_amount, p_request, p_model, p_task,
                    p_now, p_now + p_ttl);
    END IF;
    IF k.rpm IS NOT NULL OR k.tpm IS NOT NULL THEN
        INSERT INTO rate_windows (key_id, window_start, requests, tokens)
            VALUES (p_key, p_window, 1, p_tokens)
            ON CONFLICT (key_id, window_start) DO UPDATE
            SET requests = rate_windows.requests + 1,
                tokens = rate_windows.tokens + EXCLUDED.tokens;
    END IF;
    requests := requests + 1; tokens := tokens + p_tokens; verdict := 'ok';
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
        # The sum of the key's open reservations in the period, kept with them.
        sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("model", sa.Text),
        sa.Column("task", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("reservations_by_expiry", "reservations", ["expires_at"])
    op.create_table(
        "rate_windows",
        sa.Column("key_id", sa.Text, sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION perfics_admit")
    for table in ("rate_windows", "reservations", "key_spend", "api_keys"):
        op.drop_table(table)
