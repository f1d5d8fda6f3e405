-- Events for the seller's systems (SPEC §12). An event is written to the outbox in the
-- same transaction as the change that caused it, with one delivery per matching webhook;
-- admin instances deliver them (at least once), claiming due deliveries with
-- FOR UPDATE SKIP LOCKED and a lease, so two instances never send the same attempt.
CREATE TABLE webhooks (
    id          text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2000),
    events      text[] NOT NULL DEFAULT '{}',   -- empty: every event type
    secret      text NOT NULL,                  -- needed to sign; shown once at creation
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_project ON webhooks (project_id, created_at DESC, id DESC);

CREATE TABLE outbox_events (
    id          text PRIMARY KEY,               -- the webhook-id header, stable across retries
    project_id  text NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL,                 -- ids, names and times; never a secret
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_events_project ON outbox_events (project_id, created_at DESC);

CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         text NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    webhook_id       text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    leased_until     timestamptz NULL,          -- an instance is sending it until then
    last_status      integer NULL,              -- the receiver's HTTP status
    last_error       text NULL,                 -- or why there was none (timeout, refused)
    last_duration_ms double precision NULL,
    last_attempt_at  timestamptz NULL,          -- when the latest attempt started
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (event_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id DESC);

-- Notices already sent (token.expiring 7 days/1 day before, token.expired, quota.warning
-- and quota.exhausted per period): the key's uniqueness makes each exactly once across
-- any number of instances.
CREATE TABLE event_notices (
    key         text PRIMARY KEY,               -- e.g. 'token.expiring:7d:<token id>'
    created_at  timestamptz NOT NULL DEFAULT now()
);
