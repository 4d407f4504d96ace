import { P2prcError } from "./errors.ts";

/**
 * Deterministic JSON: object keys sorted, no whitespace. Signatures are made over this text,
 * so two nodes serialising the same value get the same bytes. Rejects values JSON cannot
 * carry faithfully (undefined in arrays, NaN, Infinity, functions, bigint).
 */
export function canonicalJson(value: unknown): string {
  return encode(value, "$");
}

function encode(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new P2prcError("E_INVALID", `${path}: non-finite number`);
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v, i) => encode(v, `${path}[${i}]`)).join(",")}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        // Dates, Maps, Sets, buffers and class instances would all encode as {} and sign as equal.
        throw new P2prcError("E_INVALID", `${path}: only plain objects can be signed`);
      }
      const keys = Object.keys(value as object)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort();
      const parts = keys.map(
        (k) => `${JSON.stringify(k)}:${encode((value as Record<string, unknown>)[k], `${path}.${k}`)}`,
      );
      return `{${parts.join(",")}}`;
    }
    default:
      throw new P2prcError("E_INVALID", `${path}: ${typeof value} cannot be signed`);
  }
}
