/** Who is asking. Until cluster trust exists, a caller is identified by where it connects from. */
export interface Caller {
  /** Stable id used as container owner (a node id once requests are signed). */
  id: string;
  /** The node itself or an operator on this machine: may see and manage every container. */
  admin: boolean;
}
