// Loaded first by cli/main.ts. docker-modem (dockerode's transport) calls url.parse() for a tcp:// engine,
// and outside node_modules (the compiled binary) that prints Node's DEP0169 DeprecationWarning with a
// `p2prc --trace-warnings` hint, a flag p2prc does not have. That one warning is about a library we
// cannot change, not about anything the user did: it is dropped; every other warning still prints.
const DROPPED = new Set(["DEP0169"]);

const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;

function codeOf(args: unknown[]): unknown {
  const [warning, second, third] = args;
  if (warning instanceof Error && "code" in warning) return (warning as { code?: unknown }).code;
  if (second && typeof second === "object") return (second as { code?: unknown }).code;
  return third; // emitWarning(message, type, code)
}

process.emitWarning = ((...args: unknown[]) => {
  if (DROPPED.has(codeOf(args) as string)) return;
  emitWarning(...args);
}) as typeof process.emitWarning;

export {};
