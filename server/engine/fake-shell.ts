// The few commands FakeEngine runs (a busybox-like subset): enough for the engine contract suite and the
// tests that use the fake, so that the same `sh -c "..."` means the same on the fake and on Docker.
// Statements split on `;`, `&&`, `||` and newlines; words on blanks, with '…' and "…" quoting and $NAME;
// redirections `> f`, `>> f`, `>&2`, `2>&1`, `2> f` (a `>` inside quotes is read as one too: keep it out).

/** A container's files as the fake keeps them: absolute path → content, or "dir". */
export type FakeFs = Map<string, Uint8Array | "dir">;

/** Where a running command writes and what it sees. */
export interface ShellContext {
  fs: FakeFs;
  env: Record<string, string>;
  cwd: string;
  out: (data: Uint8Array) => void;
  err: (data: Uint8Array) => void;
  /** Waits this long on the engine's clock; rejects when the process is killed. */
  sleep: (ms: number) => Promise<void>;
}

const enc = new TextEncoder();

/** Resolves `path` against `cwd` into a clean absolute path. */
export function absPath(cwd: string, path: string): string {
  const parts: string[] = [];
  for (const p of (path.startsWith("/") ? path : `${cwd}/${path}`).split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  return `/${parts.join("/")}`;
}

export function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** Splits one statement into words, expanding $NAME outside single quotes. */
function words(src: string, env: Record<string, string>): string[] {
  const out: string[] = [];
  let cur = "";
  let started = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < src.length; i++) {
    const c = src[i] as string;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "$" && quote === '"') [cur, i] = expand(src, i, cur, env);
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      started = true;
    } else if (c === " " || c === "\t") {
      if (started || cur) out.push(cur);
      cur = "";
      started = false;
    } else if (c === "$") {
      [cur, i] = expand(src, i, cur, env);
      started = true;
    } else {
      cur += c;
      started = true;
    }
  }
  if (started || cur) out.push(cur);
  return out;
}

function expand(src: string, i: number, cur: string, env: Record<string, string>): [string, number] {
  const m = /^\$(\{(\w+)\}|(\w+))/.exec(src.slice(i));
  if (!m) return [`${cur}$`, i];
  return [cur + (env[(m[2] ?? m[3]) as string] ?? ""), i + m[0].length - 1];
}

/** Runs `sh -c script`; resolves with the exit status. */
export async function runScript(script: string, ctx: ShellContext): Promise<number> {
  let status = 0;
  // statement, and the operator that joins it to the previous one
  const parts = script.split(/(;|&&|\|\||\n)/);
  let op = ";";
  for (let i = 0; i < parts.length; i += 2) {
    const stmt = (parts[i] as string).trim();
    if (stmt && !(op === "&&" && status !== 0) && !(op === "||" && status === 0)) {
      const r = await runStatement(stmt, ctx);
      if (r.exit) return r.status;
      status = r.status;
    }
    op = parts[i + 1] ?? ";";
    if (op === "\n") op = ";";
  }
  return status;
}

async function runStatement(stmt: string, ctx: ShellContext): Promise<{ status: number; exit: boolean }> {
  const argv: string[] = [];
  let out = ctx.out;
  let err = ctx.err;
  const all = words(stmt.replace(/(\d?>>?&?\d?)/g, " $1 "), ctx.env);
  for (let i = 0; i < all.length; i++) {
    const w = all[i] as string;
    if (w === ">&2" || w === "1>&2") out = ctx.err;
    else if (w === "2>&1") err = out;
    else if (/^[12]?>>?$/.test(w)) {
      const target = absPath(ctx.cwd, all[++i] ?? "");
      const sink = fileSink(ctx.fs, target, w.endsWith(">>"));
      if (w.startsWith("2")) err = sink;
      else out = sink;
    } else argv.push(w);
  }
  if (argv[0] === "exit") return { status: Number(argv[1] ?? 0) & 255, exit: true };
  return { status: await runCommand(argv, { ...ctx, out, err }), exit: false };
}

function fileSink(fs: FakeFs, path: string, append: boolean): (data: Uint8Array) => void {
  if (path === "/dev/null") return () => {};
  if (!append || !(fs.get(path) instanceof Uint8Array)) fs.set(path, new Uint8Array());
  return (data) => {
    const prev = fs.get(path);
    const base = prev instanceof Uint8Array ? prev : new Uint8Array();
    const next = new Uint8Array(base.length + data.length);
    next.set(base);
    next.set(data, base.length);
    fs.set(path, next);
  };
}

/** Runs one program by argv (what an exec without a shell does); 127 for one the fake does not have. */
export async function runCommand(argv: string[], ctx: ShellContext): Promise<number> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case undefined:
    case "true":
      return 0;
    case "false":
      return 1;
    case "sh":
      return args[0] === "-c" ? runScript(args[1] ?? "", ctx) : 0;
    case "echo": {
      const n = args[0] === "-n";
      ctx.out(enc.encode(`${(n ? args.slice(1) : args).join(" ")}${n ? "" : "\n"}`));
      return 0;
    }
    case "pwd":
      ctx.out(enc.encode(`${ctx.cwd}\n`));
      return 0;
    case "cat": {
      let status = 0;
      for (const a of args) {
        const f = ctx.fs.get(absPath(ctx.cwd, a));
        if (f instanceof Uint8Array) ctx.out(f);
        else {
          ctx.err(enc.encode(`cat: can't open '${a}': No such file or directory\n`));
          status = 1;
        }
      }
      return status;
    }
    case "mkdir":
      for (const a of args.filter((a) => a !== "-p")) {
        let p = absPath(ctx.cwd, a);
        const made: string[] = [];
        while (p !== "/" && !ctx.fs.has(p)) {
          made.push(p);
          p = parentOf(p);
        }
        for (const d of made) ctx.fs.set(d, "dir");
      }
      return 0;
    case "sleep":
      await ctx.sleep(Number(args[0] ?? 0) * 1000);
      return 0;
    case "tail":
      // `tail -f /dev/null`: the idle main process of a batch or pool container
      if (args.includes("-f")) await ctx.sleep(Number.POSITIVE_INFINITY);
      return 0;
    default:
      ctx.err(enc.encode(`sh: ${cmd}: not found\n`));
      return 127;
  }
}
