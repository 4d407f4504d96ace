// The per-platform entry points export the same API as the package's main entry.
declare module "better-sqlite3/linux-x64" {
  import Database from "better-sqlite3";
  export default Database;
}
