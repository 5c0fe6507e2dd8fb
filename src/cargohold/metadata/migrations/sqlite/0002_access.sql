-- Access control: accounts (users, organizations, robots), teams, repository
-- permissions, public repositories and refresh tokens. Repositories are referred
-- to by name: a permission may be granted before the first push, and the pattern
-- "ns/*" covers every repository of a namespace.
CREATE TABLE accounts (
    id                      INTEGER PRIMARY KEY,
    name                    TEXT NOT NULL UNIQUE,
    kind                    TEXT NOT NULL,
    owner_id                INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    secret_hash             TEXT,
    superuser               BOOLEAN NOT NULL,
    disabled                BOOLEAN NOT NULL,
    credentials_changed_at  BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    CHECK (kind IN ('user', 'organization', 'robot')),
    CHECK ((kind = 'robot') = (owner_id IS NOT NULL))
);
CREATE INDEX accounts_by_owner ON accounts (owner_id);

CREATE TABLE teams (
    id               INTEGER PRIMARY KEY,
    organization_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE team_members (
    team_id     INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, account_id)
);
CREATE INDEX team_members_by_account ON team_members (account_id);

-- Exactly one of account_id and team_id is set.
CREATE TABLE repository_permissions (
    id          INTEGER PRIMARY KEY,
    repository  TEXT NOT NULL,
    account_id  INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    team_id     INTEGER REFERENCES teams(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    CHECK (role IN ('read', 'write', 'admin')),
    CHECK ((account_id IS NULL) <> (team_id IS NULL))
);
CREATE UNIQUE INDEX permissions_of_account ON repository_permissions (repository, account_id);
CREATE UNIQUE INDEX permissions_of_team ON repository_permissions (repository, team_id);
CREATE INDEX permissions_by_account ON repository_permissions (account_id);
CREATE INDEX permissions_by_team ON repository_permissions (team_id);

CREATE TABLE public_repositories (
    repository  TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

-- Refresh tokens (OAuth2, offline_token) are stored as the SHA-256 of the token.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_account ON refresh_tokens (account_id);
