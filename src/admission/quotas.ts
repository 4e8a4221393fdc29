// Per-namespace node quotas (in total and per node_type), counted from the live view: online and
// offline records count, removed ones don't, and a node already counted is never counted twice.
// The counts are kept as the view changes, so a check is O(1) in the namespace's size.
import { placeNeeds, type WriteQuota } from '../domain/node-lifecycle.js';
import { quotaExceeded, shiftPlaces, type NamespacePlaces, type NodeRecord, type Registration } from '../domain/node.js';
import type { LiveView } from '../engine/live-view.js';
import type { NamespaceQuotas } from '../store/store.js';

/** Statuses that hold a place in a quota. */
const COUNTED = ['online', 'offline'] as const;

/** A new node admitted under a quota whose write has not settled yet. */
interface Reservation {
  namespace: string;
  node_type: string;
  /** Concurrent writes of the same node hold one place between them. */
  holders: number;
}

export class QuotaBook {
  private readonly quotas = new Map<string, NamespaceQuotas>();
  /** Places held by admitted writes in flight, by `${namespace}/${node_id}`. */
  private readonly reserved = new Map<string, Reservation>();

  /**
   * Records holding a place, per namespace, in total and by node_type: built from the view on first
   * use, then kept by its changes and purges, so a check costs no scan of the namespace.
   */
  private held: Map<string, NamespacePlaces> | null = null;

  constructor(private readonly view: LiveView) {
    view.onChange((change, previous) => {
      if (change === null) {
        this.held = null; // the whole view was replaced
        return;
      }
      if (previous && previous.status !== 'removed') this.move(previous, -1);
      if (change.node.status !== 'removed') this.move(change.node, 1);
    });
    view.onPurge((dropped) => {
      for (const node of dropped) if (node.status !== 'removed') this.move(node, -1);
    });
  }

  private move(node: NodeRecord, by: number): void {
    if (!this.held) return;
    let places = this.held.get(node.namespace);
    if (!places) {
      places = { total: 0, byType: new Map() };
      this.held.set(node.namespace, places);
    }
    shiftPlaces(places, node.node_type, by);
  }

  private placesOf(namespace: string, nodeType: string | undefined): number {
    if (!this.held) {
      this.held = new Map();
      for (const node of this.view.query({ status: [...COUNTED], limit: Number.MAX_SAFE_INTEGER }).nodes) this.move(node, 1);
    }
    const places = this.held.get(namespace);
    if (!places) return 0;
    return nodeType === undefined ? places.total : (places.byType.get(nodeType) ?? 0);
  }

  /** Replaces every namespace's quotas (a reload from the store). */
  load(all: NamespaceQuotas[]): void {
    this.quotas.clear();
    for (const quotas of all) this.quotas.set(quotas.namespace, quotas);
  }

  set(quotas: NamespaceQuotas): void {
    this.quotas.set(quotas.namespace, quotas);
  }

  get(namespace: string): NamespaceQuotas | undefined {
    return this.quotas.get(namespace);
  }

  /** The limits a registration of this node_type is held to, for the store to check again at commit. */
  limitsFor(namespace: string, nodeType: string): WriteQuota | undefined {
    const quotas = this.quotas.get(namespace);
    if (!quotas) return undefined;
    const perType = quotas.max_nodes_per_type[nodeType];
    if (quotas.max_nodes === null && perType === undefined) return undefined;
    return { max_nodes: quotas.max_nodes, max_nodes_of_type: perType ?? null };
  }

  /**
   * Throws QUOTA_EXCEEDED when `registration` would add a node the namespace has no room for.
   * A node admitted into a new place reserves it until its write settles: the returned function
   * releases it. So a burst of first registrations on this instance is refused early; the store
   * counts again at commit (limitsFor), which holds across instances sharing a database.
   */
  check(registration: Registration, current: NodeRecord | undefined): (() => void) | undefined {
    const quotas = this.quotas.get(registration.namespace);
    if (!quotas) return undefined;
    const key = `${registration.namespace}/${registration.node_id}`;
    const held = this.reserved.get(key);
    // A place reserved by a write in flight counts as one the node holds.
    const needs = placeNeeds(current, registration.node_type);
    const counted = !needs.addsNode || held !== undefined;
    const countedType = !needs.addsType || held?.node_type === registration.node_type;
    let takesPlace = false;
    if (!counted && quotas.max_nodes !== null) {
      const used = this.count(registration.namespace, undefined, quotas.max_nodes);
      if (used >= quotas.max_nodes) throw quotaExceeded(registration, 'max_nodes', quotas.max_nodes, used);
      takesPlace = true;
    }
    const typeLimit = quotas.max_nodes_per_type[registration.node_type];
    if (typeLimit !== undefined && !countedType) {
      const used = this.count(registration.namespace, registration.node_type, typeLimit);
      if (used >= typeLimit) throw quotaExceeded(registration, 'max_nodes_per_type', typeLimit, used);
      takesPlace = true;
    }
    if (!takesPlace && held === undefined) return undefined;
    const reservation = held ?? { namespace: registration.namespace, node_type: registration.node_type, holders: 0 };
    reservation.holders += 1;
    this.reserved.set(key, reservation);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      reservation.holders -= 1;
      if (reservation.holders === 0 && this.reserved.get(key) === reservation) this.reserved.delete(key);
    };
  }

  /**
   * Nodes holding a place: committed ones from the kept counts, plus reserved ones up to `limit`.
   * A reserved node already committed (an update in flight) counts once.
   */
  private count(namespace: string, nodeType: string | undefined, limit: number): number {
    if (limit === 0) return 0;
    let used = this.placesOf(namespace, nodeType);
    for (const [key, reservation] of this.reserved) {
      if (used >= limit) break;
      if (reservation.namespace !== namespace || (nodeType !== undefined && reservation.node_type !== nodeType)) continue;
      const nodeId = key.slice(namespace.length + 1);
      const committed = this.view.get(namespace, nodeId);
      const alreadyCounted = committed !== undefined && committed.status !== 'removed' && (nodeType === undefined || committed.node_type === nodeType);
      if (!alreadyCounted) used += 1;
    }
    return used;
  }
}
