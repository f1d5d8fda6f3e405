-- Projects own tokens; deleting a project deletes its tokens.
CREATE TABLE projects (
    id          text PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    rate_limit  text NULL,              -- 'N/unit'; NULL means the gateway default
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only an argon2id hash of the secret is stored; the raw token is never kept.
CREATE TABLE tokens (
    id            text PRIMARY KEY,     -- the public id inside the token
    project_id    text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    description   text NOT NULL DEFAULT '' CHECK (char_length(description) <= 200),
    secret_hash   text NOT NULL CHECK (secret_hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NULL,     -- NULL: never expires
    last_used_at  timestamptz NULL      -- NULL: never used
);

-- Listing a project's tokens, newest first, with keyset pagination.
CREATE INDEX tokens_project_newest ON tokens (project_id, created_at DESC, id DESC);
-- The request path looks tokens up by primary key only.
