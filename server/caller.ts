/** Who is asking: the node id that signed the request. */
export interface Caller {
  /** Stable id used as container owner (the signer's node id). */
  id: string;
  /** The node itself or a cluster admin: may see and manage every container. */
  admin: boolean;
  /**
   * The node's own key (its operator's CLI): not bound by per-member quotas or the rate limit. Always
   * explicit: being an admin does not make a caller the operator (Docs/Security.md).
   */
  operator: boolean;
}
