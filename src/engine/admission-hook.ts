// The hook the registry asks before a content-changing registration (namespace policies and quotas
// live in admission/, above the engine), and tells of every write it committed.
import type { RollcallError } from '../domain/errors.js';
import type { NodeRecord, Registration, TopologyChange } from '../domain/node.js';
import type { WriteQuota } from '../store/store.js';

/** Who asks for a write, as far as the caller knows. */
export interface AdmissionContext {
  /** A credential id, 'anonymous', or 'node:<id>'; 'anonymous' when absent. */
  actor?: string;
  /** The verified identity of the node, when its introspection was signed. */
  identity?: { spiffeId: string };
  /** The registry's own record: exempt from namespace policies and quotas. */
  system?: boolean;
}

/**
 * Namespace admission (policies, quotas): asked before every content-changing registration, with
 * the node as the live view holds it; throwing a RollcallError refuses the write (nothing is written).
 */
export interface AdmissionCheck {
  /**
   * May return a release function: what the admission reserved for this write (a quota place) is
   * held until the write has settled, committed or not, and then released.
   */
  admit(registration: Registration, current: NodeRecord | undefined, context: AdmissionContext & { namespace: string }): Promise<void | (() => void)>;
  /** The quota limits the store checks again when it commits the registration. */
  quotaFor?(registration: Registration): WriteQuota | undefined;
  /** Told of a registration refused after admission: by the store at commit, for its quota (another instance took the place). */
  refused?(registration: Registration, context: AdmissionContext & { namespace: string }, error: RollcallError): void;
  /** Told of every registration or deregistration this instance committed (the audit trail). */
  committed?(write: { action: 'register' | 'deregister'; namespace: string; node_id: string; change: TopologyChange }, context: AdmissionContext): void;
}
