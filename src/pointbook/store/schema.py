"""The schema as named migrations, applied in order and recorded in pb_migrations: SQLite's
(`MIGRATIONS`) and PostgreSQL's (`POSTGRES_MIGRATIONS`), one entry of each per name.

A released migration is never edited: changes come as a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001-initial",
        """
        CREATE TABLE pb_pack_versions (
            domain TEXT NOT NULL,
            version TEXT NOT NULL,
            effective_from_us INTEGER NOT NULL,
            published_at_us INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (domain, version)
        );
        CREATE TABLE pb_events (
            domain TEXT NOT NULL,
            id TEXT NOT NULL,
            subject TEXT NOT NULL,
            type TEXT NOT NULL,
            occurred_us INTEGER NOT NULL,
            attributes TEXT NOT NULL,
            evidence TEXT,
            issuer TEXT,
            content_hash TEXT NOT NULL,
            received_us INTEGER NOT NULL,
            PRIMARY KEY (domain, id)
        ) WITHOUT ROWID;
        CREATE INDEX pb_events_subject ON pb_events (domain, subject, occurred_us);
        CREATE TABLE pb_entries (
            domain TEXT NOT NULL,
            event_id TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            pack_version TEXT NOT NULL,
            pack_hash TEXT NOT NULL,
            delta INTEGER NOT NULL,
            occurred_us INTEGER NOT NULL,
            counts_until_us INTEGER,
            title TEXT NOT NULL,
            evidence TEXT,
            tags TEXT NOT NULL,
            daily_cap INTEGER NOT NULL,
            recorded_us INTEGER NOT NULL,
            PRIMARY KEY (domain, event_id, rule_id)
        ) WITHOUT ROWID;
        CREATE INDEX pb_entries_subject ON pb_entries (domain, subject, occurred_us);
        CREATE TABLE pb_decisions (
            domain TEXT NOT NULL,
            id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            subject TEXT NOT NULL,
            threshold_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            level INTEGER NOT NULL,
            figure INTEGER NOT NULL,
            triggered_us INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            effective_us INTEGER NOT NULL,
            ends_us INTEGER,
            attributes TEXT NOT NULL,
            trigger TEXT NOT NULL,
            pack_version TEXT NOT NULL,
            withdrawn INTEGER NOT NULL,
            recorded_us INTEGER NOT NULL,
            PRIMARY KEY (domain, id, revision)
        ) WITHOUT ROWID;
        CREATE INDEX pb_decisions_subject ON pb_decisions (domain, subject);
        CREATE TABLE pb_dirty (
            domain TEXT NOT NULL,
            subject TEXT NOT NULL,
            PRIMARY KEY (domain, subject)
        ) WITHOUT ROWID;
        """,
    ),
]

MIGRATIONS.append(
    (
        "0002-accountability",
        """
        ALTER TABLE pb_events ADD COLUMN incident TEXT;
        ALTER TABLE pb_events ADD COLUMN salt TEXT;
        ALTER TABLE pb_events ADD COLUMN erased_us INTEGER;
        ALTER TABLE pb_decisions ADD COLUMN requires_review INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE pb_decisions ADD COLUMN reason TEXT;
        CREATE TABLE pb_audit (
            seq INTEGER PRIMARY KEY,
            at_us INTEGER NOT NULL,
            kind TEXT NOT NULL,
            domain TEXT NOT NULL,
            ref TEXT NOT NULL,
            commitment TEXT NOT NULL,
            prev TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TABLE pb_appeals (
            id TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            subject TEXT NOT NULL,
            event_id TEXT,
            rule_id TEXT,
            decision_id TEXT,
            reason TEXT NOT NULL,
            filed_us INTEGER NOT NULL,
            salt TEXT
        );
        CREATE INDEX pb_appeals_subject ON pb_appeals (domain, subject);
        CREATE TABLE pb_appeal_decisions (
            appeal_id TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            reason TEXT NOT NULL,
            decided_us INTEGER NOT NULL
        );
        CREATE TABLE pb_confirmations (
            decision_id TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            reason TEXT NOT NULL,
            confirmed_us INTEGER NOT NULL
        );
        CREATE TABLE pb_outbox (
            seq INTEGER PRIMARY KEY,
            domain TEXT NOT NULL,
            key TEXT NOT NULL UNIQUE,
            decision_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_us INTEGER NOT NULL
        );
        CREATE TABLE pb_outbox_taken (
            seq INTEGER PRIMARY KEY,
            taken_us INTEGER NOT NULL
        );
        CREATE TABLE pb_switches (
            seq INTEGER PRIMARY KEY,
            domain TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            at_us INTEGER NOT NULL
        );
        CREATE TABLE pb_domain_keys (
            domain TEXT PRIMARY KEY,
            key TEXT NOT NULL
        );
        CREATE TABLE pb_shares (
            code_hash TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            subject TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            expires_us INTEGER NOT NULL,
            used_us INTEGER
        );
        """,
    )
)

# The migration that creates the audit log. Rows already in a store it upgrades (written at
# 0001, before there was a log) are adopted into the log as it is created: each store's
# `migrate` calls `adopt_unaudited` in that migration's transaction.
AUDIT_LOG_MIGRATION = "0002-accountability"

# The same migrations for PostgreSQL, under the same names in the same pb_migrations table.
# Tables and columns keep SQLite's names and ORDER (commitments read some rows with SELECT *),
# and types that return the Python values SQLite returns: BIGINT for times (microseconds),
# points and flags (0/1), TEXT for JSON (as written, byte for byte). Text compares and sorts
# by byte (COLLATE "C"), as SQLite's BINARY does, whatever the database's locale.
# `seq` columns SQLite assigns (INTEGER PRIMARY KEY) are identity columns here.
_TEXT = 'TEXT COLLATE "C"'

POSTGRES_MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001-initial",
        f"""
        CREATE TABLE pb_pack_versions (
            domain {_TEXT} NOT NULL,
            version {_TEXT} NOT NULL,
            effective_from_us BIGINT NOT NULL,
            published_at_us BIGINT NOT NULL,
            content_hash {_TEXT} NOT NULL,
            text {_TEXT} NOT NULL,
            PRIMARY KEY (domain, version)
        );
        CREATE TABLE pb_events (
            domain {_TEXT} NOT NULL,
            id {_TEXT} NOT NULL,
            subject {_TEXT} NOT NULL,
            type {_TEXT} NOT NULL,
            occurred_us BIGINT NOT NULL,
            attributes {_TEXT} NOT NULL,
            evidence {_TEXT},
            issuer {_TEXT},
            content_hash {_TEXT} NOT NULL,
            received_us BIGINT NOT NULL,
            PRIMARY KEY (domain, id)
        );
        CREATE INDEX pb_events_subject ON pb_events (domain, subject, occurred_us);
        CREATE TABLE pb_entries (
            domain {_TEXT} NOT NULL,
            event_id {_TEXT} NOT NULL,
            rule_id {_TEXT} NOT NULL,
            subject {_TEXT} NOT NULL,
            pack_version {_TEXT} NOT NULL,
            pack_hash {_TEXT} NOT NULL,
            delta BIGINT NOT NULL,
            occurred_us BIGINT NOT NULL,
            counts_until_us BIGINT,
            title {_TEXT} NOT NULL,
            evidence {_TEXT},
            tags {_TEXT} NOT NULL,
            daily_cap BIGINT NOT NULL,
            recorded_us BIGINT NOT NULL,
            PRIMARY KEY (domain, event_id, rule_id)
        );
        CREATE INDEX pb_entries_subject ON pb_entries (domain, subject, occurred_us);
        CREATE TABLE pb_decisions (
            domain {_TEXT} NOT NULL,
            id {_TEXT} NOT NULL,
            revision BIGINT NOT NULL,
            subject {_TEXT} NOT NULL,
            threshold_id {_TEXT} NOT NULL,
            kind {_TEXT} NOT NULL,
            title {_TEXT} NOT NULL,
            level BIGINT NOT NULL,
            figure BIGINT NOT NULL,
            triggered_us BIGINT NOT NULL,
            ordinal BIGINT NOT NULL,
            effective_us BIGINT NOT NULL,
            ends_us BIGINT,
            attributes {_TEXT} NOT NULL,
            trigger {_TEXT} NOT NULL,
            pack_version {_TEXT} NOT NULL,
            withdrawn BIGINT NOT NULL,
            recorded_us BIGINT NOT NULL,
            PRIMARY KEY (domain, id, revision)
        );
        CREATE INDEX pb_decisions_subject ON pb_decisions (domain, subject);
        CREATE TABLE pb_dirty (
            domain {_TEXT} NOT NULL,
            subject {_TEXT} NOT NULL,
            PRIMARY KEY (domain, subject)
        );
        """,
    ),
    (
        "0002-accountability",
        f"""
        ALTER TABLE pb_events ADD COLUMN incident {_TEXT};
        ALTER TABLE pb_events ADD COLUMN salt {_TEXT};
        ALTER TABLE pb_events ADD COLUMN erased_us BIGINT;
        ALTER TABLE pb_decisions ADD COLUMN requires_review BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE pb_decisions ADD COLUMN reason {_TEXT};
        CREATE TABLE pb_audit (
            seq BIGINT PRIMARY KEY,
            at_us BIGINT NOT NULL,
            kind {_TEXT} NOT NULL,
            domain {_TEXT} NOT NULL,
            ref {_TEXT} NOT NULL,
            commitment {_TEXT} NOT NULL,
            prev {_TEXT} NOT NULL,
            hash {_TEXT} NOT NULL
        );
        CREATE TABLE pb_appeals (
            id {_TEXT} PRIMARY KEY,
            domain {_TEXT} NOT NULL,
            subject {_TEXT} NOT NULL,
            event_id {_TEXT},
            rule_id {_TEXT},
            decision_id {_TEXT},
            reason {_TEXT} NOT NULL,
            filed_us BIGINT NOT NULL,
            salt {_TEXT}
        );
        CREATE INDEX pb_appeals_subject ON pb_appeals (domain, subject);
        CREATE TABLE pb_appeal_decisions (
            appeal_id {_TEXT} PRIMARY KEY,
            domain {_TEXT} NOT NULL,
            outcome {_TEXT} NOT NULL,
            reviewer {_TEXT} NOT NULL,
            reason {_TEXT} NOT NULL,
            decided_us BIGINT NOT NULL
        );
        CREATE TABLE pb_confirmations (
            decision_id {_TEXT} PRIMARY KEY,
            domain {_TEXT} NOT NULL,
            reviewer {_TEXT} NOT NULL,
            reason {_TEXT} NOT NULL,
            confirmed_us BIGINT NOT NULL
        );
        CREATE TABLE pb_outbox (
            seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            domain {_TEXT} NOT NULL,
            key {_TEXT} NOT NULL UNIQUE,
            decision_id {_TEXT} NOT NULL,
            payload {_TEXT} NOT NULL,
            created_us BIGINT NOT NULL
        );
        CREATE TABLE pb_outbox_taken (
            seq BIGINT PRIMARY KEY,
            taken_us BIGINT NOT NULL
        );
        CREATE TABLE pb_switches (
            seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            domain {_TEXT} NOT NULL,
            state {_TEXT} NOT NULL,
            reason {_TEXT} NOT NULL,
            actor {_TEXT} NOT NULL,
            at_us BIGINT NOT NULL
        );
        CREATE TABLE pb_domain_keys (
            domain {_TEXT} PRIMARY KEY,
            key {_TEXT} NOT NULL
        );
        CREATE TABLE pb_shares (
            code_hash {_TEXT} PRIMARY KEY,
            domain {_TEXT} NOT NULL,
            subject {_TEXT} NOT NULL,
            created_us BIGINT NOT NULL,
            expires_us BIGINT NOT NULL,
            used_us BIGINT
        );
        """,
    ),
]

# Bearer tokens for the API and portal: only a hash of each token is kept.
_TOKENS = """
        CREATE TABLE pb_tokens (
            hash {text} PRIMARY KEY,
            role {text} NOT NULL,
            domain {text} NOT NULL,
            subject {text},
            label {text} NOT NULL,
            created_us {int} NOT NULL
        );
        """
MIGRATIONS.append(("0003-tokens", _TOKENS.format(text="TEXT", int="INTEGER")))
POSTGRES_MIGRATIONS.append(("0003-tokens", _TOKENS.format(text=_TEXT, int="BIGINT")))

# Decisions are derived: a decision row written before 0002 lacks what 0002 added to it
# (`requires_review`, `reason`), so after the upgrade it would be read with the defaults, e.g.
# a sanction that needs a reviewer's confirmation shown in force without one (T12 found it).
# The subjects of such rows (the only ones with no reason) are put on the work list, so the
# next refresh re-derives their decisions under the current rules.
_REDERIVE = """
        {insert} INTO pb_dirty SELECT DISTINCT domain, subject FROM pb_decisions
        WHERE reason IS NULL {conflict}
        """
MIGRATIONS.append(
    ("0004-rederive-old-decisions", _REDERIVE.format(insert="INSERT OR IGNORE", conflict=""))
)
POSTGRES_MIGRATIONS.append(
    (
        "0004-rederive-old-decisions",
        _REDERIVE.format(insert="INSERT", conflict="ON CONFLICT DO NOTHING"),
    )
)
