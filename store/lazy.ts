/**
 * Prepared statements made on first use: a command that opens the store for one query (`--ls`) prepares
 * one statement, not the forty a server uses. Each property prepares its statement once, when first read.
 */
export function lazyStatements<T extends Record<string, () => unknown>>(
  make: T,
): { readonly [K in keyof T]: ReturnType<T[K]> } {
  const out = {} as { [K in keyof T]: ReturnType<T[K]> };
  for (const key of Object.keys(make) as (keyof T)[]) {
    let made: ReturnType<T[typeof key]> | undefined;
    Object.defineProperty(out, key, {
      get: () => {
        made ??= make[key]?.() as ReturnType<T[typeof key]>;
        return made;
      },
      enumerable: true,
    });
  }
  return out;
}
