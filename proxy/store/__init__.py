"""Where state shared between requests and processes lives: keys, budgets, rate windows and
the spend ledger (``proxy.store.base.Store``), on SQLite or PostgreSQL."""
