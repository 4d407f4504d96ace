// A future's function travels as source: names it takes from around it (a closure over a local variable, a
// module's import) do not exist on the node. Before sending, its source is parsed alone and every name it
// reads that it does not declare itself, that is not a global of the runtime and not one of the allowed
// imports, is refused with the name. The parser is TypeScript's, loaded when present (it is a development
// dependency); where it is not, the node's ReferenceError says the same after the fact (readRemoteError).
import { P2prcError } from "../../core/index.ts";

type Ts = typeof import("typescript");
let tsModule: Promise<Ts | undefined> | undefined;

/** TypeScript's parser when this program can load it; undefined otherwise (the check is then skipped). */
function loadTs(): Promise<Ts | undefined> {
  // a specifier in a variable: the compiled binary does not bundle typescript, it is looked up at run time
  const name = "typescript";
  tsModule ??= import(name).then(
    (m: { default?: Ts } & Ts) => m.default ?? m,
    () => undefined,
  );
  return tsModule;
}

/** Free names of the functions parsed lately, by source. */
const parsed = new Map<string, Promise<string[] | undefined>>();

/** Names any function may use: the module's own helpers and CommonJS's. */
const ALWAYS = new Set(["arguments", "require", "module", "exports", "undefined", "globalThis"]);

/**
 * Names `source` (one function) reads without declaring them. Declarations anywhere in the function count
 * for all of it (a flat scope: it can miss a closure, never refuse a function that declares what it uses).
 * undefined when no parser is available.
 */
export async function freeNames(source: string): Promise<string[] | undefined> {
  const ts = await loadTs();
  if (!ts) return undefined;
  const file = ts.createSourceFile(
    "future.js",
    `(${source})`,
    ts.ScriptTarget.Latest,
    true,
    ts.ScriptKind.JS,
  );
  const declared = new Set<string>();
  const used = new Set<string>();
  const visit = (node: import("typescript").Node): void => {
    if (ts.isIdentifier(node)) {
      const p = node.parent;
      const named = (n: { name?: import("typescript").Node | undefined }) => n.name === node;
      if (
        (ts.isVariableDeclaration(p) && named(p)) ||
        (ts.isParameter(p) && named(p)) ||
        ((ts.isFunctionDeclaration(p) || ts.isFunctionExpression(p)) && named(p)) ||
        ((ts.isClassDeclaration(p) || ts.isClassExpression(p)) && named(p)) ||
        (ts.isBindingElement(p) && named(p))
      )
        declared.add(node.text);
      else if (
        (ts.isPropertyAccessExpression(p) && p.name === node) ||
        (ts.isPropertyAssignment(p) && p.name === node) ||
        (ts.isBindingElement(p) && p.propertyName === node) ||
        ((ts.isMethodDeclaration(p) ||
          ts.isPropertyDeclaration(p) ||
          ts.isGetAccessorDeclaration(p) ||
          ts.isSetAccessorDeclaration(p)) &&
          named(p)) ||
        ts.isLabeledStatement(p) ||
        ts.isBreakOrContinueStatement(p) ||
        ts.isMetaProperty(p)
      ) {
        // a property's or label's name, not a variable
      } else used.add(node.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return [...used].filter((n) => !declared.has(n));
}

/**
 * Refuses a function that uses names from outside it: every free name must be a global of this runtime
 * (the node's is the same Bun) or one of `allowed` (the future's imports).
 */
export async function checkClosures(source: string, allowed: Iterable<string>): Promise<void> {
  const ok = new Set(allowed);
  // a map() sends one function many times: parsed once
  let pending = parsed.get(source);
  if (!pending) {
    pending = freeNames(source);
    parsed.set(source, pending);
    if (parsed.size > 256) parsed.delete(parsed.keys().next().value as string);
  }
  const free = await pending;
  const outside = (free ?? []).filter((n) => !ALWAYS.has(n) && !ok.has(n) && !(n in globalThis));
  if (outside.length === 0) return;
  const names = outside.map((n) => `\`${n}\``).join(", ");
  throw new P2prcError(
    "E_INVALID",
    `future: fn uses ${names} from outside the function; a future's function runs on another node, where only its arguments, the runtime's globals and the allowed imports exist`,
    {
      field: "fn",
      hint: `pass ${outside.length > 1 ? "them" : "it"} as an argument (cluster.future(fn, [${outside.join(", ")}])), or list a module in { imports: { name: "specifier" } }`,
    },
  );
}

/** The node's ReferenceError for a name that is not there, as the same clear message (no parser here). */
export function closureHint(name: string, message: string): string | undefined {
  const m =
    name === "ReferenceError" ? /^(?:Can't find variable: |)(\S+) is not defined$/.exec(message) : null;
  const missing = m?.[1] ?? (/^Can't find variable: (\S+)$/.exec(message)?.[1] || undefined);
  if (!missing) return undefined;
  return `\`${missing}\` is not defined on the node: a future's function cannot use variables from outside it (a closure); pass it as an argument`;
}
