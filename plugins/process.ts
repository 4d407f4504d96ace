/** What a program run on this machine (git, ansible-playbook) gave back. */
export interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a program (never through a shell) and collects its output. */
export type RunProcess = (
  argv: string[],
  o: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs: number },
) => Promise<ProcessResult>;

/** Finds a program on PATH (Bun.which), or undefined. */
export type Which = (program: string) => string | undefined;

export const which: Which = (program) => Bun.which(program) ?? undefined;

/** RunProcess with Bun.spawn: SIGKILL at the timeout. */
export const runProcess: RunProcess = async (argv, o) => {
  const proc = Bun.spawn(argv, {
    cwd: o.cwd,
    env: o.env ?? process.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, o.timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
};
