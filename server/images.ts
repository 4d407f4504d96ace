/**
 * The canonical form of an image reference: a tag is added when there is neither tag nor digest, so
 * `busybox` and `busybox:latest` name the same image.
 */
export function normalizeImageRef(ref: string): string {
  if (ref.includes("@")) return ref;
  const lastSlash = ref.lastIndexOf("/");
  return ref.slice(lastSlash + 1).includes(":") ? ref : `${ref}:latest`;
}

/** Whether `ref` is allowed by `allowed` (empty allows every image). */
export function imageAllowed(allowed: readonly string[], ref: string): boolean {
  if (allowed.length === 0) return true;
  const want = normalizeImageRef(ref);
  return allowed.some((a) => normalizeImageRef(a) === want);
}
