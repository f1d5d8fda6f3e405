-- The usage ledger (SPEC §11): per token and UTC day, exact counts written by the
-- gateways' flushes. No foreign key to tokens: a revoked token's usage stays in its
-- project's totals. A project's deletion deletes its ledger.
CREATE TABLE usage_daily (
    project_id       text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    token_id         text NOT NULL,
    day              date NOT NULL,
    proxied          bigint NOT NULL DEFAULT 0 CHECK (proxied >= 0),
    upstream_errors  bigint NOT NULL DEFAULT 0 CHECK (upstream_errors >= 0),
    rate_limited     bigint NOT NULL DEFAULT 0 CHECK (rate_limited >= 0),
    forbidden        bigint NOT NULL DEFAULT 0 CHECK (forbidden >= 0),
    PRIMARY KEY (project_id, day, token_id)
);
CREATE INDEX usage_daily_token ON usage_daily (token_id, day);

-- Batches already applied: a flush whose commit succeeded but whose answer was lost is
-- recognised on retry and not applied twice. Old ids are pruned.
CREATE TABLE usage_batches (
    id          uuid PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_batches_applied ON usage_batches (applied_at);

-- Quotas: 'N/day' or 'N/month' (UTC calendar periods); NULL: none.
ALTER TABLE projects ADD COLUMN quota text NULL;

-- Units admitted per project and quota period ('day:2026-12-01', 'month:2026-12'), as
-- flushed by the gateways (the local backend adds its unflushed count to this).
CREATE TABLE quota_usage (
    project_id  text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    period      text NOT NULL,
    used        bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (project_id, period)
);
