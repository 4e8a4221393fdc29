// Namespace admission: CEL policies (versioned in the store, compiled once per version) and quotas,
// checked before every content-changing registration; every refusal is counted and audited.
import { Environment } from '@marcbachmann/cel-js';
import type { Logger } from 'pino';
import client from 'prom-client';
import { RollcallError } from '../domain/errors.js';
import type { NodeRecord, Registration } from '../domain/node.js';
import type { AdmissionCheck, AdmissionContext, Registry } from '../engine/registry.js';
import { metricOnce, type MetricsRegistry } from '../metrics.js';
import type { NamespaceQuotas, PolicyStore, PolicyVersion, WriteQuota } from '../store/store.js';
import { ANONYMOUS, AUDIT_TEXT_WIDTHS, fitText, type AuditLog } from '../security/audit.js';
import { QuotaBook } from './quotas.js';

/** Longest policy source accepted. */
export const POLICY_MAX_CHARS = 16_384;

/** Why a policy refused, as the metric's `reason` label (a small fixed set). */
export const POLICY_DENIAL_REASONS = ['rejected', 'evaluation_error', 'not_bool'] as const;
export type PolicyDenialReason = (typeof POLICY_DENIAL_REASONS)[number];

/**
 * The variables a policy sees. `namespace` is a reserved word in CEL, hence `ns`; `identity` is
 * `{spiffe_id}` when the introspection was signed, else an empty map (test with `has(identity.spiffe_id)`).
 */
const environment = new Environment({ limits: { maxAstNodes: 2000, maxDepth: 50 } }).registerVariable('node', 'map').registerVariable('identity', 'map').registerVariable('ns', 'string');

type Program = (context: Record<string, unknown>) => unknown;

/** Compiles `expression` or throws POLICY_INVALID with the compiler's message. */
export function compilePolicy(expression: string): Program {
  if (expression.trim().length === 0) throw new RollcallError('POLICY_INVALID', 'The policy is empty; write a CEL expression that yields a bool.');
  if (expression.length > POLICY_MAX_CHARS) throw new RollcallError('POLICY_INVALID', `The policy is ${expression.length} characters; the limit is ${POLICY_MAX_CHARS}.`);
  let checked: ReturnType<Environment['check']>;
  try {
    checked = environment.check(expression);
  } catch (error) {
    throw new RollcallError('POLICY_INVALID', `The policy does not compile: ${(error as Error).message}`, { cause: error });
  }
  if (!checked.valid) {
    const message = checked.error?.message ?? 'unknown error';
    throw new RollcallError('POLICY_INVALID', `The policy does not compile: ${message}`, { details: { error: checked.error?.code ?? null } });
  }
  // `dyn` may turn out a bool at run time (a map lookup); anything else never will.
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    throw new RollcallError('POLICY_INVALID', `The policy yields ${checked.type ?? 'an unknown type'}; it must yield a bool (true admits).`, { details: { type: checked.type ?? null } });
  }
  return environment.parse(expression) as Program;
}

/** JSON as CEL wants it: whole numbers as int (BigInt), so `x <= 100` and `x + 1` behave. */
function toCel(value: unknown): unknown {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(toCel);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) if (item !== undefined) out[key] = toCel(item);
    return out;
  }
  return value;
}

export interface NamespaceAdmissionOptions {
  registry: Registry;
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  store: PolicyStore;
  audit: AuditLog;
  logger: Logger;
  /** How often policies and quotas saved by other instances are picked up. */
  refreshMs: number;
  now?: () => number;
}

/** The registry's AdmissionCheck: a namespace's current policy, then its quotas. */
export class NamespaceAdmission implements AdmissionCheck {
  readonly quotas: QuotaBook;
  private readonly current = new Map<string, PolicyVersion>();
  /** Compiled programs by namespace and version: versions never change once saved. */
  private readonly programs = new Map<string, Program>();
  private readonly policyDenials: client.Counter<'namespace' | 'reason'>;
  private readonly quotaDenials: client.Counter<'namespace'>;
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly options: NamespaceAdmissionOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.logger.child({ component: 'admission' });
    this.quotas = new QuotaBook(options.registry.view);
    const registers = [options.metrics];
    this.policyDenials = metricOnce(
      options.metrics,
      'rollcall_policy_denials_total',
      () =>
        new client.Counter({
          name: 'rollcall_policy_denials_total',
          help: 'Registrations refused by a namespace policy, by namespace and reason (rejected, evaluation_error, not_bool).',
          labelNames: ['namespace', 'reason'],
          registers,
        }),
    );
    this.quotaDenials = metricOnce(
      options.metrics,
      'rollcall_quota_denials_total',
      () => new client.Counter({ name: 'rollcall_quota_denials_total', help: "Registrations refused because the namespace's quota was reached.", labelNames: ['namespace'], registers }),
    );
  }

  get store(): PolicyStore {
    return this.options.store;
  }

  /** Loads every namespace's current policy and quotas, then keeps them fresh. */
  async start(): Promise<void> {
    await this.reload();
    this.timer = setInterval(() => {
      this.reload().catch((err: unknown) => this.log.warn({ err }, 'policy reload failed; keeping the last ones'));
    }, this.options.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async reload(): Promise<void> {
    const [policies, quotas] = await Promise.all([this.options.store.currentPolicies(), this.options.store.listQuotas()]);
    for (const policy of policies) {
      const known = this.current.get(policy.namespace);
      if (!known || known.version < policy.version) this.current.set(policy.namespace, policy);
    }
    this.quotas.load(quotas);
  }

  async admit(registration: Registration, current: NodeRecord | undefined, context: AdmissionContext & { namespace: string }): Promise<void | (() => void)> {
    try {
      this.checkPolicy(registration, context);
      return this.quotas.check(registration, current);
    } catch (error) {
      if (error instanceof RollcallError) this.refused(registration, context, error);
      throw error;
    }
  }

  quotaFor(registration: Registration): WriteQuota | undefined {
    return this.quotas.limitsFor(registration.namespace, registration.node_type);
  }

  committed(write: { action: 'register' | 'deregister'; namespace: string; node_id: string; change: { change_type: string; version: number; reason: string } }, context: AdmissionContext): void {
    this.options.audit.record({
      actor: actorOf(context),
      action: write.action === 'register' ? 'node.register' : 'node.deregister',
      namespace: write.namespace,
      node_id: write.node_id,
      decision: 'allowed',
      reason: write.change.reason,
      details: { change_type: write.change.change_type, topology_version: write.change.version },
    });
  }

  private checkPolicy(registration: Registration, context: AdmissionContext & { namespace: string }): void {
    const policy = this.current.get(context.namespace);
    if (!policy) return;
    const deny = (reason: PolicyDenialReason, message: string): RollcallError => {
      this.policyDenials.inc({ namespace: context.namespace, reason });
      return new RollcallError('POLICY_DENIED', `Policy version ${policy.version} of namespace ${context.namespace} ${message}.`, {
        details: { namespace: context.namespace, node_id: registration.node_id, policy_version: policy.version, reason },
      });
    };
    let result: unknown;
    try {
      result = this.program(policy)({
        node: toCel(registration),
        identity: context.identity ? { spiffe_id: context.identity.spiffeId } : {},
        ns: context.namespace,
      });
    } catch (error) {
      // A policy that cannot decide (a missing field, a type error) denies.
      throw deny('evaluation_error', `failed to evaluate: ${(error as Error).message}`);
    }
    if (typeof result !== 'boolean') throw deny('not_bool', `yielded ${typeof result === 'bigint' ? 'an int' : typeof result}, not a bool`);
    if (!result) throw deny('rejected', `refuses node ${registration.node_id} (node_type ${registration.node_type})`);
  }

  private program(policy: PolicyVersion): Program {
    const key = `${policy.namespace}\u0000${policy.version}`;
    let program = this.programs.get(key);
    if (!program) {
      program = compilePolicy(policy.expression);
      // Only the current version of each namespace is evaluated: drop the ones it replaced.
      for (const other of this.programs.keys()) if (other.startsWith(`${policy.namespace}\u0000`)) this.programs.delete(other);
      this.programs.set(key, program);
    }
    return program;
  }

  /** Counts and audits a refusal, at admission or at commit. */
  refused(registration: Registration, context: AdmissionContext & { namespace: string }, error: RollcallError): void {
    if (error.code === 'QUOTA_EXCEEDED') this.quotaDenials.inc({ namespace: context.namespace });
    this.options.audit.record({
      actor: actorOf(context),
      action: 'node.register',
      namespace: context.namespace,
      node_id: registration.node_id,
      decision: 'denied',
      reason: error.message,
      details: { code: error.code, node_type: registration.node_type, ...(error.details as Record<string, string | number | null> | undefined) },
    });
  }

  /** Validates and saves `expression` as the namespace's next version; it applies at once. */
  async savePolicy(namespace: string, expression: string, actor: string): Promise<PolicyVersion> {
    try {
      compilePolicy(expression);
    } catch (error) {
      if (error instanceof RollcallError) {
        this.options.audit.record({ actor, action: 'policy.update', namespace, decision: 'denied', reason: error.message });
      }
      throw error;
    }
    // created_by holds an actor as the audit log does: cut to its column, never a failed save.
    const saved = await this.options.store.savePolicy(namespace, expression, fitText(actor, AUDIT_TEXT_WIDTHS.actor), this.now());
    const known = this.current.get(namespace);
    if (!known || known.version < saved.version) this.current.set(namespace, saved);
    this.options.audit.record({ actor, action: 'policy.update', namespace, decision: 'allowed', reason: null, details: { policy_version: saved.version } });
    return saved;
  }

  async putQuotas(quotas: Pick<NamespaceQuotas, 'namespace' | 'max_nodes' | 'max_nodes_per_type'>, actor: string): Promise<NamespaceQuotas> {
    const saved = await this.options.store.putQuotas({ ...quotas, updated_by: fitText(actor, AUDIT_TEXT_WIDTHS.actor) }, this.now());
    this.quotas.set(saved);
    this.options.audit.record({
      actor,
      action: 'quota.update',
      namespace: quotas.namespace,
      decision: 'allowed',
      details: { max_nodes: saved.max_nodes, max_nodes_per_type: saved.max_nodes_per_type },
    });
    return saved;
  }
}

/** Who a write is attributed to in the audit log. */
export function actorOf(context: AdmissionContext): string {
  if (context.actor !== undefined) return context.actor;
  if (context.system === true) return 'system';
  if (context.identity) return `node:${context.identity.spiffeId}`;
  return ANONYMOUS;
}
