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
];
