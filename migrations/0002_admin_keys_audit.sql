-- Admin keys (SPEC §8): credentials for the admin API, each with a role. Project roles
-- (manager, viewer) name exactly one project; the admin role names none. Portal sessions
-- are short-lived credentials of the same kind, minted for a seller's customer.
CREATE TABLE admin_keys (
    id            text PRIMARY KEY,     -- the public id inside the key
    kind          text NOT NULL DEFAULT 'admin_key' CHECK (kind IN ('admin_key', 'portal')),
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('admin', 'manager', 'viewer')),
    project_id    text NULL REFERENCES projects (id) ON DELETE CASCADE,
    secret_hash   text NOT NULL CHECK (secret_hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NULL,     -- NULL: never expires (never for a portal session)
    last_used_at  timestamptz NULL,
    CHECK ((role = 'admin') = (project_id IS NULL)),
    CHECK (kind = 'admin_key' OR (role <> 'admin' AND expires_at IS NOT NULL))
);
CREATE INDEX admin_keys_newest ON admin_keys (kind, created_at DESC, id DESC);
CREATE INDEX admin_keys_project ON admin_keys (project_id);

-- One-time portal codes: only a SHA-256 of the code is kept; a code works once, briefly.
CREATE TABLE portal_codes (
    code_hash     bytea PRIMARY KEY,
    project_id    text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('manager', 'viewer')),
    session_ttl   interval NOT NULL,    -- how long the session it is exchanged for lasts
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz NULL
);

-- The audit log (SPEC §9): one row per successful change, written in the change's own
-- transaction. Never a secret, token, key or hash. No foreign keys: the history of a
-- deleted project or token stays.
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_type  text NOT NULL
                CHECK (actor_type IN ('bootstrap', 'admin_key', 'portal', 'cli', 'leak_report')),
    actor_id    text NULL,
    actor_name  text NULL,
    action      text NOT NULL,
    project_id  text NULL,
    target_id   text NULL,
    request_id  text NULL,
    ip          inet NULL,
    changes     jsonb NULL              -- {"field": [before, after]} for updates
);
CREATE INDEX audit_events_project ON audit_events (project_id, id DESC);
CREATE INDEX audit_events_at ON audit_events (at);

-- Append-only, for every role including a superuser: UPDATE, DELETE and TRUNCATE raise.
-- The one exception is the retention job, which deletes rows older than its horizon in a
-- transaction that says so (SET LOCAL tollgate.audit_retention_days = N).
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    horizon text := current_setting('tollgate.audit_retention_days', true);
BEGIN
    IF TG_OP = 'DELETE' AND horizon ~ '^[0-9]+$' THEN
        IF OLD.at < now() - make_interval(days => horizon::int) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only the retention job deletes events past AUDIT_RETENTION_DAYS';
END
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
