-- auth: the KohakuRiver authentication tables (db/auth.py, Peewee on SQLite).
--
-- Seed: ../shared/seeds/kohakuriver-db-models.md, "Auth Models".  The seed names
-- the seven models and what each holds; the columns below are inferred from that
-- description as Peewee would lay them out (AutoField id, ForeignKeyField ->
-- <name>_id INTEGER with a table FOREIGN KEY, unique=True -> a unique index
-- named <table>_<column>); docs/events.md lists which columns are inferred.
--
-- Nothing secret is ever in the log, which is immutable and copied to backups:
-- passwords arrive bcrypt-hashed, API tokens SHA3-512-hashed (as the seed stores
-- them), and session cookies and invitation tokens as SHA-256 hex digests.  The
-- service hashes what a client presents and looks the digest up.
--
-- Roles: anony < viewer < user < operator < admin (view user_role_levels).
--
-- Streams and events:
--   user-<id>          UserRegistered, UserProfileUpdated, UserPasswordChanged,
--                      UserRoleChanged, UserDeactivated, UserReactivated, UserDeleted,
--                      VpsAccessGranted, VpsAccessRevoked
--   session-<id>       SessionStarted, SessionEnded
--   retention-sessions SessionsExpired
--   token-<id>         TokenCreated, TokenUsed, TokenRevoked
--   invitation-<id>    InvitationCreated, InvitationRedeemed, InvitationRevoked
--   group-<id>         GroupCreated, GroupUpdated, GroupMemberAdded, GroupMemberRemoved,
--                      GroupDeleted
-- Ids of users, sessions, tokens, invitations and groups are chosen by the service
-- (they name the streams); user_groups and vps_assignments rows have no stream of
-- their own, so SQLite numbers them, identically on every replay.
--
-- Deletions remove dependent rows explicitly instead of relying on ON DELETE
-- CASCADE / SET NULL, which SQLite only applies when foreign keys are enabled.
--
-- Every event may carry `at` (ISO-8601 UTC text); without it the commit time is used.
-- @projection auth

CREATE TABLE IF NOT EXISTS users (
    id INTEGER NOT NULL PRIMARY KEY,
    username VARCHAR(50) NOT NULL,
    display_name VARCHAR(100),
    password_hash VARCHAR(255) NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    role VARCHAR(20) NOT NULL DEFAULT 'user',
    created_at DATETIME NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (username);

CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER NOT NULL PRIMARY KEY,
    session_id VARCHAR(64) NOT NULL,
    user_id INTEGER NOT NULL,
    expires_at DATETIME NOT NULL,
    created_at DATETIME NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS sessions_session_id ON sessions (session_id);
CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions (user_id);

CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL,
    token_hash VARCHAR(128) NOT NULL,
    name VARCHAR(100) NOT NULL,
    last_used DATETIME,
    created_at DATETIME NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_token_hash ON tokens (token_hash);
CREATE INDEX IF NOT EXISTS tokens_user_id ON tokens (user_id);

CREATE TABLE IF NOT EXISTS invitations (
    id INTEGER NOT NULL PRIMARY KEY,
    token VARCHAR(64) NOT NULL,
    role VARCHAR(20) NOT NULL DEFAULT 'user',
    group_id INTEGER,
    max_usage INTEGER NOT NULL DEFAULT 1,
    usage_count INTEGER NOT NULL DEFAULT 0,
    expires_at DATETIME NOT NULL,
    created_by_id INTEGER,
    created_at DATETIME NOT NULL,
    FOREIGN KEY (group_id) REFERENCES groups (id) ON DELETE SET NULL,
    FOREIGN KEY (created_by_id) REFERENCES users (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS invitations_token ON invitations (token);
CREATE INDEX IF NOT EXISTS invitations_group_id ON invitations (group_id);
CREATE INDEX IF NOT EXISTS invitations_created_by_id ON invitations (created_by_id);

CREATE TABLE IF NOT EXISTS groups (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    tier INTEGER NOT NULL DEFAULT 0,
    limits_json TEXT NOT NULL DEFAULT '{}',
    created_at DATETIME NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS groups_name ON groups (name);

CREATE TABLE IF NOT EXISTS user_groups (
    id INTEGER NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    role_override VARCHAR(20),
    created_at DATETIME NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    FOREIGN KEY (group_id) REFERENCES groups (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS user_groups_user_id ON user_groups (user_id);
CREATE INDEX IF NOT EXISTS user_groups_group_id ON user_groups (group_id);
CREATE UNIQUE INDEX IF NOT EXISTS user_groups_user_id_group_id ON user_groups (user_id, group_id);

CREATE TABLE IF NOT EXISTS vps_assignments (
    id INTEGER NOT NULL PRIMARY KEY,
    vps_task_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS vps_assignments_vps_task_id ON vps_assignments (vps_task_id);
CREATE INDEX IF NOT EXISTS vps_assignments_user_id ON vps_assignments (user_id);
CREATE UNIQUE INDEX IF NOT EXISTS vps_assignments_vps_task_id_user_id
    ON vps_assignments (vps_task_id, user_id);

-- UserRole.is_at_least(role, required) becomes role_level >= the required level.
CREATE VIEW IF NOT EXISTS user_role_levels AS
SELECT id, username, role, is_active,
       CASE role WHEN 'anony' THEN 0 WHEN 'viewer' THEN 1 WHEN 'user' THEN 2
                 WHEN 'operator' THEN 3 WHEN 'admin' THEN 4 END AS role_level
  FROM users;

-- @on UserRegistered
-- Registration through an invitation is one atomic batch: this event, then
-- InvitationRedeemed on the invitation's stream (and GroupMemberAdded when the
-- invitation names a group).  invitation_id is kept in the event for the audit.
INSERT INTO users (id, username, display_name, password_hash, is_active, role, created_at)
VALUES (:id, :username, :display_name, :password_hash, COALESCE(:is_active, 1),
        COALESCE(:role, 'user'), COALESCE(:at, @time));

-- @on UserProfileUpdated
UPDATE users SET display_name = :display_name WHERE id = :id;

-- @on UserPasswordChanged
UPDATE users SET password_hash = :password_hash WHERE id = :id;

-- @on UserRoleChanged
UPDATE users SET role = :role WHERE id = :id;

-- @on UserDeactivated
UPDATE users SET is_active = 0 WHERE id = :id;

-- @on UserReactivated
UPDATE users SET is_active = 1 WHERE id = :id;

-- @on UserDeleted
DELETE FROM sessions WHERE user_id = :id;
DELETE FROM tokens WHERE user_id = :id;
DELETE FROM user_groups WHERE user_id = :id;
DELETE FROM vps_assignments WHERE user_id = :id;
UPDATE invitations SET created_by_id = NULL WHERE created_by_id = :id;
DELETE FROM users WHERE id = :id;

-- @on VpsAccessGranted
INSERT INTO vps_assignments (vps_task_id, user_id, created_at)
VALUES (:vps_task_id, :user_id, COALESCE(:at, @time))
ON CONFLICT (vps_task_id, user_id) DO NOTHING;

-- @on VpsAccessRevoked
DELETE FROM vps_assignments WHERE vps_task_id = :vps_task_id AND user_id = :user_id;

-- @on SessionStarted
-- session_id is the SHA-256 hex digest of the cookie value.
INSERT INTO sessions (id, session_id, user_id, expires_at, created_at)
VALUES (:id, :session_id, :user_id, :expires_at, COALESCE(:at, @time));

-- @on SessionEnded
DELETE FROM sessions WHERE id = :id;

-- @on SessionsExpired
-- The expiry sweep, with its cutoff resolved by the sender (replays delete the same rows).
DELETE FROM sessions WHERE julianday(expires_at) < julianday(:before);

-- @on TokenCreated
INSERT INTO tokens (id, user_id, token_hash, name, created_at)
VALUES (:id, :user_id, :token_hash, :name, COALESCE(:at, @time));

-- @on TokenUsed
UPDATE tokens SET last_used = COALESCE(:at, @time) WHERE id = :id;

-- @on TokenRevoked
DELETE FROM tokens WHERE id = :id;

-- @on InvitationCreated
-- The event's token_hash (SHA-256 hex of the invitation link's token) fills `token`.
INSERT INTO invitations (id, token, role, group_id, max_usage, usage_count, expires_at,
                         created_by_id, created_at)
VALUES (:id, :token_hash, COALESCE(:role, 'user'), :group_id, COALESCE(:max_usage, 1), 0,
        :expires_at, :created_by_id, COALESCE(:at, @time));

-- @on InvitationRedeemed
UPDATE invitations SET usage_count = usage_count + 1
 WHERE id = :id AND usage_count < max_usage;

-- @on InvitationRevoked
DELETE FROM invitations WHERE id = :id;

-- @on GroupCreated
-- limits is a map in the event ({"max_tasks": 8, "max_gpus": 4, ...}); it binds as JSON text.
INSERT INTO groups (id, name, tier, limits_json, created_at)
VALUES (:id, :name, COALESCE(:tier, 0), COALESCE(:limits, '{}'), COALESCE(:at, @time));

-- @on GroupUpdated
UPDATE groups
   SET name = COALESCE(:name, name),
       tier = COALESCE(:tier, tier),
       limits_json = COALESCE(:limits, limits_json)
 WHERE id = :id;

-- @on GroupMemberAdded
-- Adding a member twice updates the role override (the unique user-group pair).
INSERT INTO user_groups (user_id, group_id, role_override, created_at)
VALUES (:user_id, :group_id, :role_override, COALESCE(:at, @time))
ON CONFLICT (user_id, group_id) DO UPDATE SET role_override = excluded.role_override;

-- @on GroupMemberRemoved
DELETE FROM user_groups WHERE user_id = :user_id AND group_id = :group_id;

-- @on GroupDeleted
DELETE FROM user_groups WHERE group_id = :id;
UPDATE invitations SET group_id = NULL WHERE group_id = :id;
DELETE FROM groups WHERE id = :id;
