// A small, strict parser of the Prometheus text exposition format (0.0.4), for tests: it throws on
// anything the format does not allow (a sample before its TYPE, a bad name, a bad escape, a duplicate
// series, buckets that are not cumulative or lack +Inf, a counter without `_total`).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text))
    throw new Error(`line ${line}: bad value "${text}"`);
  return Number(text);
}

/** `{a="x",b="y\n"}` at `s[i]`; returns the labels and the index after `}`. */
function parseLabels(s: string, i: number, line: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // {
  while (s[i] !== "}") {
    const eq = s.indexOf("=", i);
    if (eq < 0) throw new Error(`line ${line}: label without =`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name) || name.startsWith("__")) throw new Error(`line ${line}: bad label name "${name}"`);
    if (Object.hasOwn(labels, name)) throw new Error(`line ${line}: label ${name} twice`);
    if (s[eq + 1] !== '"') throw new Error(`line ${line}: label value not quoted`);
    let j = eq + 2;
    let value = "";
    for (;;) {
      const c = s[j];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const e = s[j + 1];
        if (e === "n") value += "\n";
        else if (e === "\\" || e === '"') value += e;
        else throw new Error(`line ${line}: bad escape \\${e}`);
        j += 2;
      } else {
        value += c;
        j++;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (s[i] === ",") i++;
    else if (s[i] !== "}") throw new Error(`line ${line}: expected , or } after a label`);
  }
  return [labels, i + 1];
}

/** The families of a text exposition, in order. */
export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const familyOf = (sample: string): Family | undefined => {
    for (const suffix of ["", "_bucket", "_sum", "_count"]) {
      if (!sample.endsWith(suffix)) continue;
      const f = families.get(sample.slice(0, sample.length - suffix.length));
      if (f && (suffix === "" || f.type === "histogram" || f.type === "summary")) return f;
    }
    return undefined;
  };
  for (const [n, raw] of text.split("\n").entries()) {
    const line = n + 1;
    if (raw.trim() === "") continue;
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) continue; // a plain comment
      const [, kind, name = "", rest = ""] = m;
      if (!NAME.test(name)) throw new Error(`line ${line}: bad metric name "${name}"`);
      const f = families.get(name) ?? { name, type: "untyped", help: "", samples: [] };
      if (kind === "TYPE") {
        if (f.samples.length) throw new Error(`line ${line}: TYPE of ${name} after its samples`);
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest))
          throw new Error(`line ${line}: unknown type "${rest}"`);
        f.type = rest as Family["type"];
      } else f.help = rest;
      families.set(name, f);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(raw);
    if (!m) throw new Error(`line ${line}: not a sample: ${raw}`);
    const name = m[1] as string;
    let i = name.length;
    let labels: Record<string, string> = {};
    if (raw[i] === "{") [labels, i] = parseLabels(raw, i, line);
    if (raw[i] !== " ") throw new Error(`line ${line}: expected a space before the value`);
    const [valueText = "", timestamp, extra] = raw.slice(i + 1).split(" ");
    if (extra !== undefined || (timestamp !== undefined && !/^-?\d+$/.test(timestamp)))
      throw new Error(`line ${line}: trailing text`);
    const f = familyOf(name);
    if (!f) throw new Error(`line ${line}: sample ${name} without a TYPE`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`line ${line}: series ${key} twice`);
    seen.add(key);
    f.samples.push({ name, labels, value: parseValue(valueText, line) });
  }
  for (const f of families.values()) {
    if (f.type === "counter" && !f.name.endsWith("_total"))
      throw new Error(`counter ${f.name} does not end in _total`);
    if (f.type === "histogram") checkHistogram(f);
  }
  return families;
}

/** Buckets cumulative per series, ending in +Inf equal to _count. */
function checkHistogram(f: Family): void {
  const series = new Map<string, { le: number; v: number }[]>();
  const counts = new Map<string, number>();
  const keyOf = (labels: Record<string, string>) =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([k]) => k !== "le")
        .sort(),
    );
  for (const s of f.samples) {
    const key = keyOf(s.labels);
    if (s.name.endsWith("_bucket")) {
      const le = s.labels.le;
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      series.set(key, [...(series.get(key) ?? []), { le: parseValue(le, 0), v: s.value }]);
    } else if (s.name.endsWith("_count")) counts.set(key, s.value);
  }
  for (const [key, buckets] of series) {
    buckets.sort((a, b) => a.le - b.le);
    for (let i = 1; i < buckets.length; i++)
      if ((buckets[i]?.v ?? 0) < (buckets[i - 1]?.v ?? 0))
        throw new Error(`${f.name}: buckets not cumulative`);
    const last = buckets.at(-1);
    if (last?.le !== Number.POSITIVE_INFINITY) throw new Error(`${f.name}: no +Inf bucket`);
    if (counts.get(key) !== last.v) throw new Error(`${f.name}: +Inf bucket is not _count`);
  }
}

/** The value of the one sample of `name` with these labels (undefined when there is none). */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const f of families.values())
    for (const s of f.samples)
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
  return undefined;
}
