import { join, normalize } from "node:path";

/**
 * Keeps a path from a node's tar inside `root` (a hostile node cannot write elsewhere): leading `..`
 * are dropped, absolute names and names still climbing out refused. Internal to client/ (not in index.ts).
 */
export function safeJoin(root: string, name: string): string | undefined {
  const clean = normalize(name).replace(/^(\.\.(\/|$))+/, "");
  if (clean.startsWith("/") || clean.split("/").includes("..") || clean === "." || clean === "")
    return undefined;
  return join(root, clean);
}
