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
  // 4: the client's own containers on other nodes, its groups, and batch jobs (resumable).
  `CREATE TABLE tracked (
     id          TEXT PRIMARY KEY,
     node_id     TEXT NOT NULL,
     node_url    TEXT NOT NULL,
     name        TEXT NOT NULL,
     image       TEXT NOT NULL,
     ports       TEXT NOT NULL DEFAULT '[]',
     ssh         TEXT,
     created_at  INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE groups (
     id          TEXT PRIMARY KEY,
     created_at  INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE group_members (
     group_id      TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
     container_id  TEXT NOT NULL,
     PRIMARY KEY (group_id, container_id)
   ) STRICT;
   CREATE TABLE batches (
     id          TEXT PRIMARY KEY,
     key         TEXT NOT NULL UNIQUE,
     job         TEXT NOT NULL,
     out_dir     TEXT NOT NULL,
     created_at  INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE batch_tasks (
     batch_id     TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
     idx          INTEGER NOT NULL,
     state        TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
     node         TEXT,
     exit_code    INTEGER,
     attempts     INTEGER NOT NULL DEFAULT 0,
     duration_ms  INTEGER,
     error        TEXT,
     PRIMARY KEY (batch_id, idx)
   ) STRICT;`,
  // 5: cluster documents this node hosts or has joined (the newest validly signed version of each).
  `CREATE TABLE clusters (
     host        TEXT NOT NULL,
     name        TEXT NOT NULL,
     version     INTEGER NOT NULL,
     document    TEXT NOT NULL,
     joined_at   INTEGER NOT NULL,
     PRIMARY KEY (host, name)
   ) STRICT;`,
  // 6: the published ports of the client's containers that plugins were handed (P2PRC's IsUsed), so that
  // two plugins never get the same one.
  `CREATE TABLE plugin_ports (
     container_id  TEXT NOT NULL,
     port          INTEGER NOT NULL,
     plugin        TEXT NOT NULL,
     claimed_at    INTEGER NOT NULL,
     PRIMARY KEY (container_id, port)
   ) STRICT;`,
  // 7: images members pushed to this node (p2prc image push): their pusher and size, for quotas.
  `CREATE TABLE pushed_images (
     ref         TEXT PRIMARY KEY,
     image_id    TEXT NOT NULL,
     owner       TEXT NOT NULL,
     bytes       INTEGER NOT NULL,
     pushed_at   INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX pushed_images_owner ON pushed_images (owner);`,
];
