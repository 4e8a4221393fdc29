// The signing section of the benchmark: registrations/s through POST /api/v1/introspection with
// signature verification in enforce mode, next to the same load with signature mode off.
//
// The CA and the nodes' SVIDs are made here with rollcall's own CA module (a CA in a temporary
// folder, one SVID per node issued from the node's CSR), and every introspection is signed before
// the load starts (signEnvelope), so the load generator only sends strings. Both servers are
// children with the same CA configuration, each on its own fresh database; only
// ROLLCALL_SIGNATURE_MODE differs (off, enforce). Both get the same bodies in the same order.
//
// Every body is a distinct event (its own event id: the verifier refuses a replay) and a content
// change (body k is node k mod NODES with revision k div NODES in its capabilities: an unchanged
// introspection would be a heartbeat, not a write), so every request is a durable write: the first
// of each node an add (201), the rest updates (200). Consecutive bodies are different nodes, so
// no two requests in flight touch the same node.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envelope } from '../src/domain/events.js';
import type { JsonObject } from '../src/domain/json.js';
import { KEY_ALGORITHM, SIGNING_ALGORITHM, initCaFiles, nodeSpiffeId, type CertificateAuthority } from '../src/security/ca.js';
import { signEnvelope, type SvidCredentials } from '../src/security/signing.js';
import { Pkcs10CertificateRequestGenerator, SubjectAlternativeNameExtension } from '../src/security/x509.js';
import {
  ADMIN_URL,
  JSON_HEADERS,
  MODELS,
  QUICK,
  ZONES,
  cannon,
  cpuContext,
  createDatabase,
  deferCleanup,
  describeFailures,
  fmt,
  log,
  measure,
  metricValue,
  metricsText,
  ms,
  nodeId,
  startServerChild,
  stopServerChild,
  table,
  withDatabase,
  type CpuUse,
  type LoadStats,
  type Machine,
  type Server,
} from './common.js';

// ---------------------------------------------------------------------------------------------
// Settings

const SETTINGS = QUICK ? { warmupSeconds: 0.5, phaseSeconds: 2, bodies: 20_000 } : { warmupSeconds: 1, phaseSeconds: 6, bodies: 40_000 };
/**
 * Distinct nodes, each with its own key and SVID (issuing takes ~5 ms each). More than the
 * connections, so that no two requests in flight are about the same node.
 */
const NODES = 1_000;
const CONNECTIONS = 128;
const INTROSPECTION_PATH = '/api/v1/introspection';
const TRUST_DOMAIN = 'bench.rollcall';
const NODE_TYPE = 'compute';
/**
 * The SVIDs name their namespace (subject O=default), as those issued through a join token do.
 * Without it the subject is empty, and the verifier's namespaceFromSubject throws a TypeError on
 * it (Node's X509Certificate#subject is undefined then): every signed request answers 500.
 */
const NAMESPACE = 'default';
const SVID_TTL_SECONDS = 3_600;
/** Signatures made at once while pre-signing (WebCrypto signs on the thread pool). */
const SIGN_CHUNK = 500;

const MODES = ['off', 'enforce'] as const;
type Mode = (typeof MODES)[number];

export interface SigningSectionContext {
  root: string;
  results: Record<string, unknown>;
  failures: string[];
  machine: Machine;
}

// ---------------------------------------------------------------------------------------------
// Credentials and bodies

interface NodeCredentials extends SvidCredentials {
  nodeId: string;
  spiffeId: string;
}

/** A key pair, a CSR asking for the node's SPIFFE ID, and the SVID the CA issues for it. */
async function issueNode(ca: CertificateAuthority, i: number): Promise<NodeCredentials> {
  const id = nodeId(i);
  const spiffeId = nodeSpiffeId(TRUST_DOMAIN, NODE_TYPE, id);
  const keys = await crypto.subtle.generateKey(KEY_ALGORITHM, false, ['sign', 'verify']);
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name: `CN=${id}`,
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [new SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
    },
    crypto,
  );
  const svid = await ca.issue(csr, spiffeId, SVID_TTL_SECONDS, { namespace: NAMESPACE });
  return { nodeId: id, spiffeId, certificatePem: svid.certificate, privateKey: keys.privateKey };
}

/** Node i's introspection at `revision`: the same document as the HTTP section's, its capabilities revised. */
function introspectionPayload(i: number, revision: number): JsonObject {
  const zone = ZONES[i % ZONES.length] as string;
  const gpu = i % 8 === 0;
  return {
    node_id: nodeId(i),
    node_name: `host-${i}`,
    node_type: NODE_TYPE,
    node_version: `1.${i % 7}.${i % 3}`,
    lease_ttl_seconds: 3600,
    capabilities: {
      revision,
      gpu,
      gpu_model: gpu ? 'nvidia-a100-80gb' : null,
      gpu_count: gpu ? 1 + (i % 4) : 0,
      cpu: { cores: 8 << (i % 3), threads: 16 << (i % 3), arch: 'x86_64', model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz' },
      memory_mb: 32_768 << (i % 3),
      disk: { type: i % 2 === 0 ? 'nvme' : 'hdd', size_gb: 960 << (i % 4), free_gb: 400 + ((i + revision) % 500) },
      network: { bandwidth_gbps: 25, rdma: gpu },
      runtimes: ['python3.11', 'cuda-12.2', 'onnxruntime-1.17', 'triton-2.41'],
      models: [MODELS[i % MODELS.length] as string, MODELS[(i + 1) % MODELS.length] as string, MODELS[(i + 3) % MODELS.length] as string],
      max_concurrent_jobs: 4 + (i % 12),
      queues: ['default', `priority-${i % 3}`, 'batch'],
      features: { streaming: true, batching: i % 3 !== 0, quantization: ['fp16', 'int8'], tensor_parallel: gpu },
    },
    endpoints: { api: `http://10.${(i >> 8) & 255}.${i & 255}.1:8080`, metrics: `http://10.${(i >> 8) & 255}.${i & 255}.1:9100/metrics` },
    current_state: { health_status: 'healthy' },
    metadata: {
      hostname: `host-${i}.${zone}.bench.internal`,
      ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      role: `worker-${i % 10}`,
      labels: [zone, `rack-${i % 32}`, i % 2 === 0 ? 'ssd' : 'hdd', 'bench'],
      region: 'eu-west-1',
      datacenter: `dc-${i % 3}`,
      owner: 'platform-team',
    },
  };
}

interface Prepared {
  bodies: string[];
  caDir: string;
  certFile: string;
  keyFile: string;
  issueSeconds: number;
  signSeconds: number;
  bodyBytes: number;
  certificateBytes: number;
}

async function prepare(): Promise<Prepared> {
  const caDir = await mkdtemp(join(tmpdir(), 'rollcall-bench-ca-'));
  deferCleanup(() => rm(caDir, { recursive: true, force: true }));
  const { certFile, keyFile, ca } = await initCaFiles(join(caDir, 'ca'), TRUST_DOMAIN);

  const issueStarted = performance.now();
  const nodes: NodeCredentials[] = [];
  for (let start = 0; start < NODES; start += SIGN_CHUNK) {
    const chunk = Array.from({ length: Math.min(SIGN_CHUNK, NODES - start) }, (_, k) => issueNode(ca, start + k));
    nodes.push(...(await Promise.all(chunk)));
  }
  const issueSeconds = (performance.now() - issueStarted) / 1000;
  log(`issued ${fmt(NODES)} SVIDs (${TRUST_DOMAIN}, one key per node) in ${fmt(issueSeconds, 1)} s`);

  const signStarted = performance.now();
  const bodies: string[] = new Array<string>(SETTINGS.bodies);
  for (let start = 0; start < SETTINGS.bodies; start += SIGN_CHUNK) {
    const chunk = Array.from({ length: Math.min(SIGN_CHUNK, SETTINGS.bodies - start) }, async (_, k) => {
      const index = start + k;
      const i = index % NODES;
      const node = nodes[i] as NodeCredentials;
      const event = envelope('NODE_INTROSPECTION', node.nodeId, introspectionPayload(i, Math.floor(index / NODES)));
      bodies[index] = JSON.stringify(await signEnvelope(event, node));
    });
    await Promise.all(chunk);
  }
  const signSeconds = (performance.now() - signStarted) / 1000;
  const bodyBytes = Buffer.byteLength(bodies[0] as string);
  log(`signed ${fmt(SETTINGS.bodies)} introspections (${fmt(bodyBytes)} B each, distinct event ids) in ${fmt(signSeconds, 1)} s`);
  return { bodies, caDir, certFile, keyFile, issueSeconds, signSeconds, bodyBytes, certificateBytes: Buffer.byteLength(nodes[0]?.certificatePem ?? '') };
}

// ---------------------------------------------------------------------------------------------
// Server-side counters

/** Sum of a counter's samples whose labels include every `labels` pair (all samples when none). */
function counterSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

interface Counters {
  added: number;
  updated: number;
  unchanged: number;
  rejected: number;
  signatureRejections: number;
  durationSum: number;
  durationCount: number;
  batchSum: number;
  batchCount: number;
}

async function counters(server: Server): Promise<Counters> {
  const text = await metricsText(server);
  return {
    added: counterSum(text, 'rollcall_registrations_total', { outcome: 'added' }),
    updated: counterSum(text, 'rollcall_registrations_total', { outcome: 'updated' }),
    unchanged: counterSum(text, 'rollcall_registrations_total', { outcome: 'unchanged' }),
    rejected: counterSum(text, 'rollcall_registrations_total', { outcome: 'rejected' }),
    signatureRejections: counterSum(text, 'rollcall_signature_rejections_total'),
    durationSum: metricValue(text, 'rollcall_registration_duration_seconds_sum') ?? 0,
    durationCount: metricValue(text, 'rollcall_registration_duration_seconds_count') ?? 0,
    batchSum: metricValue(text, 'rollcall_write_batch_size_sum') ?? 0,
    batchCount: metricValue(text, 'rollcall_write_batch_size_count') ?? 0,
  };
}

// ---------------------------------------------------------------------------------------------
// One run: a server in `mode`, warm-up, measured load

interface ModeRun {
  mode: Mode;
  warmup: LoadStats;
  load: LoadStats;
  cpu: CpuUse;
  /** Bodies sent in the run (probe, warm-up and load). */
  bodies_sent: number;
  /** Server side, during the measured load. */
  server: {
    added: number;
    updated: number;
    unchanged: number;
    rejected: number;
    signature_rejections: number;
    transactions: number;
    mean_batch: number | null;
    /** The route's own time per registration (after parsing; with verification in enforce). */
    mean_registration_ms: number | null;
  };
}

async function modeRun(root: string, prepared: Prepared, mode: Mode, failures: string[]): Promise<ModeRun> {
  const dbName = `rollcall_bench_${randomBytes(4).toString('hex')}`;
  const dropDatabase = await createDatabase(dbName);
  cpuContext.database = dbName;
  cpuContext.moreDatabases = [];
  let stop: (() => Promise<void>) | null = null;
  let server: Server | null = null;
  try {
    server = await startServerChild(root, withDatabase(ADMIN_URL, dbName), {
      env: {
        ROLLCALL_SIGNATURE_MODE: mode,
        ROLLCALL_CA_CERT_FILE: prepared.certFile,
        ROLLCALL_CA_KEY_FILE: prepared.keyFile,
        ROLLCALL_TRUST_DOMAIN: TRUST_DOMAIN,
      },
    });
    const srv = server;
    stop = deferCleanup(() => stopServerChild(srv));
    log(`signature mode ${mode}: server pid ${srv.child.pid} at ${srv.url}`);
    const check = (phase: string, stats: LoadStats): void => {
      const failed = describeFailures(stats);
      if (failed) {
        failures.push(`signing ${mode} ${phase}: ${failed}`);
        log(`!! signing ${mode} ${phase}: ${failed}`);
      }
      if (srv.exitCode !== undefined) throw new Error(`the server (signature mode ${mode}) exited (code ${srv.exitCode}) during ${phase}`);
    };

    const { bodies } = prepared;
    let cursor = 0;
    const next = (): string => bodies[cursor++ % bodies.length] as string;

    // One request first: a body the server refuses says why here, not as a count of 4xx.
    const probe = await fetch(`${srv.url}${INTROSPECTION_PATH}`, { method: 'POST', headers: JSON_HEADERS, body: next(), signal: AbortSignal.timeout(30_000) });
    const probeText = await probe.text();
    if (!probe.ok) throw new Error(`POST ${INTROSPECTION_PATH} (signature mode ${mode}) answered ${probe.status}: ${probeText.slice(0, 300)}`);

    // Warm-up: the first introspection of every node (adds), then updates for a while, so that the
    // measured load is updates only in both modes.
    log(`signing ${mode}: warm-up (${fmt(NODES)} nodes added, then ${SETTINGS.warmupSeconds} s), then ${SETTINGS.phaseSeconds} s of signed introspections, ${CONNECTIONS} connections`);
    const adds = await cannon({ title: 'warmup', server: srv, method: 'POST', path: INTROSPECTION_PATH, connections: CONNECTIONS, amount: NODES - cursor, body: next });
    check('warm-up (adds)', adds);
    const warmup = await cannon({ title: 'warmup', server: srv, method: 'POST', path: INTROSPECTION_PATH, connections: CONNECTIONS, seconds: SETTINGS.warmupSeconds, body: next });
    check('warm-up', warmup);
    const before = await counters(srv);
    const measured = await measure(srv, () =>
      cannon({ title: `introspection ${mode}`, server: srv, method: 'POST', path: INTROSPECTION_PATH, connections: CONNECTIONS, seconds: SETTINGS.phaseSeconds, body: next }),
    );
    const after = await counters(srv);
    check('load', measured.stats);
    if (cursor > bodies.length) {
      failures.push(`signing ${mode}: sent ${fmt(cursor)} requests but only ${fmt(bodies.length)} bodies were signed: bodies were sent twice (raise SETTINGS.bodies)`);
    }
    const registrations = after.durationCount - before.durationCount;
    const transactions = after.batchCount - before.batchCount;
    const run: ModeRun = {
      mode,
      warmup,
      load: measured.stats,
      cpu: measured.cpu,
      bodies_sent: cursor,
      server: {
        added: after.added - before.added,
        updated: after.updated - before.updated,
        unchanged: after.unchanged - before.unchanged,
        rejected: after.rejected - before.rejected,
        signature_rejections: after.signatureRejections - before.signatureRejections,
        transactions,
        mean_batch: transactions > 0 ? Math.round(((after.batchSum - before.batchSum) / transactions) * 10) / 10 : null,
        mean_registration_ms: registrations > 0 ? Math.round(((after.durationSum - before.durationSum) / registrations) * 1e5) / 100 : null,
      },
    };
    if (run.server.unchanged > 0) failures.push(`signing ${mode}: ${run.server.unchanged} introspections were unchanged (heartbeats), not writes`);
    if (run.server.signature_rejections > 0) failures.push(`signing ${mode}: ${run.server.signature_rejections} signature rejections`);
    log(
      `   ${fmt(run.load.perSecond)} registrations/s, p50 ${ms(run.load.latencyMs.p50)}, p99 ${ms(run.load.latencyMs.p99)} (added ${fmt(run.server.added)}, updated ${fmt(run.server.updated)}, unchanged ${fmt(run.server.unchanged)}; mean batch ${fmt(run.server.mean_batch, 1)}, ${fmt(run.server.mean_registration_ms, 2)} ms in the route); CPU server ${fmt(run.cpu.server)}%, postgres ${fmt(run.cpu.postgres)}%, loadgen ${fmt(run.cpu.loadgen)}%`,
    );
    return run;
  } catch (error) {
    if (server && server.output.length > 0) log(`last server output:\n${server.output.slice(-20).join('\n')}`);
    throw error;
  } finally {
    await stop?.();
    await dropDatabase();
  }
}

// ---------------------------------------------------------------------------------------------
// The section

export async function signingSection(context: SigningSectionContext): Promise<string[]> {
  const { root, results, failures, machine } = context;
  const startedAt = performance.now();
  const prepared = await prepare();
  const runs = {} as Record<Mode, ModeRun>;
  for (const mode of MODES) runs[mode] = await modeRun(root, prepared, mode, failures);
  const { off, enforce } = runs;
  const ratio = off.load.perSecond > 0 ? enforce.load.perSecond / off.load.perSecond : NaN;
  const cpuPerThousand = (run: ModeRun): number => (run.load.perSecond > 0 ? (run.cpu.server / run.load.perSecond) * 1000 : NaN);

  results.signing = {
    settings: { ...SETTINGS, nodes: NODES, connections: CONNECTIONS, trust_domain: TRUST_DOMAIN, body_bytes: prepared.bodyBytes, svid_pem_bytes: prepared.certificateBytes },
    preparation: { issue_seconds: Math.round(prepared.issueSeconds * 100) / 100, sign_seconds: Math.round(prepared.signSeconds * 100) / 100 },
    registrations_signature_off: { ...off.load, bodies_sent: off.bodies_sent, server: off.server, cpu_pct_of_core: off.cpu },
    registrations_signature_enforce: { ...enforce.load, bodies_sent: enforce.bodies_sent, server: enforce.server, cpu_pct_of_core: enforce.cpu, enforce_vs_off: Math.round(ratio * 1000) / 1000 },
    seconds: Math.round((performance.now() - startedAt) / 100) / 10,
  };

  const load = (stats: LoadStats): string => `${fmt(stats.perSecond)}/s  (p50 ${ms(stats.latencyMs.p50)} / p99 ${ms(stats.latencyMs.p99)}, non-2xx ${stats.non2xx}, errors ${stats.errors})`;
  const rows: string[][] = [
    ['S1. Introspections/s, signature mode off', load(off.load)],
    ['S1. Introspections/s, signature mode enforce', `${load(enforce.load)}; ${fmt(ratio * 100)}% of off`],
  ];
  const serverRow = (run: ModeRun): string[] => [
    run.mode,
    fmt(run.server.added),
    fmt(run.server.updated),
    fmt(run.server.unchanged),
    fmt(run.server.signature_rejections),
    fmt(run.server.mean_batch, 1),
    `${fmt(run.server.mean_registration_ms, 2)} ms`,
  ];
  const cpuRow = (run: ModeRun): string[] => [
    run.mode,
    `${fmt(run.cpu.server)}%`,
    `${fmt(cpuPerThousand(run), 1)}%`,
    `${fmt(run.cpu.postgres)}%`,
    `${fmt(run.cpu.loadgen)}%`,
    `${fmt(run.cpu.other)}%`,
    `${fmt(run.cpu.machine_busy)}% / ${machine.cores * 100}%`,
  ];
  const out: string[] = [];
  out.push('Signed introspections');
  out.push(`servers: children with the same CA (${TRUST_DOMAIN}) and their own databases, ROLLCALL_SIGNATURE_MODE off or enforce; load generator in this process`);
  out.push(
    `load: POST ${INTROSPECTION_PATH}, ${SETTINGS.phaseSeconds} s after ${SETTINGS.warmupSeconds} s warm-up, ${CONNECTIONS} connections; the same ${fmt(SETTINGS.bodies)} pre-signed envelopes (${fmt(prepared.bodyBytes)} B, ES256, SVID ${fmt(prepared.certificateBytes)} B inside) in the same order for both:`,
  );
  out.push(`      ${fmt(NODES)} nodes with an SVID each, every body a new event id and a content change (a durable write);`);
  out.push(`      the warm-up adds every node (${fmt(NODES)} requests) and runs ${SETTINGS.warmupSeconds} s more, so the measured load is updates only`);
  out.push('');
  out.push(table(['Figure', 'Result'], rows));
  out.push('');
  out.push('Server side during the measured load (from its /metrics):');
  out.push(table(['Mode', 'added', 'updated', 'unchanged', 'sig. rejections', 'mean batch', 'in the route'], [serverRow(off), serverRow(enforce)]));
  out.push('');
  out.push(`CPU by process (% of one core; the machine has ${machine.cores * 100}%):`);
  out.push(table(['Mode', 'server', 'server per 1,000/s', 'postgres', 'loadgen', 'other', 'machine busy'], [cpuRow(off), cpuRow(enforce)]));
  out.push(`Preparation (not measured): ${fmt(NODES)} SVIDs issued in ${fmt(prepared.issueSeconds, 1)} s, ${fmt(SETTINGS.bodies)} envelopes signed in ${fmt(prepared.signSeconds, 1)} s.`);
  const interference = [off, enforce].filter((run) => run.cpu.other >= 10);
  if (interference.length > 0) {
    out.push('');
    out.push('WARNING: other processes used the CPU during the signing runs:');
    for (const run of interference) out.push(`  ${run.mode}: other ${fmt(run.cpu.other)}%${run.cpu.other_top.length > 0 ? ` (${run.cpu.other_top.join(', ')})` : ''}`);
    out.push('  Figures from a shared machine understate rollcall; rerun on a quiet one.');
  }
  return out;
}
