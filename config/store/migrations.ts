/**
 * Numbered schema migrations, applied in order at open; `PRAGMA user_version` records the last one.
 * Never edit a shipped migration: add the next number.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: node-local key/value facts (metadata text, counters).
  `CREATE TABLE meta (
     key   TEXT PRIMARY KEY,
     value TEXT NOT NULL
   ) STRICT;`,
  // 2: task containers this node runs for others (server mode).
  `CREATE TABLE containers (
     id          TEXT PRIMARY KEY,
     name        TEXT NOT NULL UNIQUE,
     image       TEXT NOT NULL,
     owner       TEXT NOT NULL,
     created_at  INTEGER NOT NULL,
     expires_at  INTEGER NOT NULL,
     cpus        REAL NOT NULL,
     memory_mb   INTEGER NOT NULL,
     gpu         INTEGER NOT NULL DEFAULT 0,
     ports       TEXT NOT NULL DEFAULT '[]',
     ssh         TEXT
   ) STRICT;
   CREATE INDEX containers_expires ON containers (expires_at);`,
  // 3: the IP table (one signed record per node, with what this node measured) and bootstrap seeds.
  `CREATE TABLE peers (
     id           TEXT PRIMARY KEY,
     record       TEXT,
     version      INTEGER NOT NULL,
     state        TEXT NOT NULL CHECK (state IN ('alive', 'suspect', 'dead')),
     last_seen    INTEGER NOT NULL,
     last_tried   INTEGER NOT NULL DEFAULT 0,
     failures     INTEGER NOT NULL DEFAULT 0,
     latency_ms   REAL,
     rtt_samples  TEXT NOT NULL DEFAULT '[]',
     updated_at   INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE seeds (
     host      TEXT NOT NULL,
     port      INTEGER NOT NULL,
     root      INTEGER NOT NULL DEFAULT 0,
     node_id   TEXT,
     added_at  INTEGER NOT NULL,
     PRIMARY KEY (host, port)
   ) STRICT;`,
];
