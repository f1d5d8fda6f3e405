-- Token capabilities (SPEC §10): scopes, IP allowlists, rotation. All immutable after
-- creation, like the rest of a token; rotation shortens the old token's expires_at.
ALTER TABLE tokens
    ADD COLUMN scopes        text[] NOT NULL DEFAULT '{}',  -- "<METHOD or *> <path prefix>"; empty: all
    ADD COLUMN allowed_ips   text[] NOT NULL DEFAULT '{}',  -- addresses or CIDR blocks; empty: any
    ADD COLUMN expires_in    text NULL,                     -- the preset it was created with
    ADD COLUMN rotated_from  text NULL,                     -- the token this one replaced
    ADD COLUMN replaced_by   text NULL,                     -- the token that replaces this one
    ADD COLUMN rotated_at    timestamptz NULL;              -- when replaced_by was issued

-- Tokens made before presets were recorded: the preset their lifetime matches.
UPDATE tokens SET expires_in = CASE
    WHEN expires_at IS NULL THEN 'never'
    WHEN expires_at - created_at > interval '300 days' THEN '365d'
    WHEN expires_at - created_at > interval '150 days' THEN '180d'
    WHEN expires_at - created_at > interval '60 days' THEN '90d'
    ELSE '30d' END;


-- "Expiring soon" listings and the expiry scheduler.
CREATE INDEX tokens_expiring ON tokens (expires_at) WHERE expires_at IS NOT NULL;
