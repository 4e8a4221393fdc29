// A DNS interface to the live view with Consul's semantics: A and SRV answers for
// `[tag.]<service>.service[.<namespace>].<domain>` (service = node_type, tag = a label) listing healthy
// instances only, node lookups `<node_id>.node[.<namespace>].<domain>` and `<hex-ipv4>.addr.<domain>`,
// NXDOMAIN with the zone's SOA for unknown names. UDP and TCP on one port; wire format by dns-packet.
// DNS carries no credential: only the namespaces configured for it are answered, any other is absent.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type Question, type SoaAnswer } from 'dns-packet';
import type { Logger } from 'pino';
import { ipv4Of, serviceAddress } from '../domain/node-address.js';
import type { NodeRecord } from '../domain/node.js';
import type { NodeQuery, NodePage } from '../engine/live-view.js';

/** The reads the DNS server needs: the live view (or anything that answers like it). */
export interface DnsNodeSource {
  query(query: NodeQuery): NodePage;
  get(namespace: string, nodeId: string): NodeRecord | undefined;
}

export interface DnsServerOptions {
  nodes: DnsNodeSource;
  logger: Logger;
  host: string;
  /** 0 picks a free port (the same one for UDP and TCP). */
  port: number;
  /** Zone served, e.g. `consul`. */
  domain: string;
  ttlSeconds: number;
  /** Namespace of names that carry none. */
  defaultNamespace: string;
  /** Namespaces answered (`*`: every one); names of any other answer NXDOMAIN, as if absent. */
  namespaces: readonly string[];
  now?: () => number;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const FLAG_AA = 1 << 10;
const FLAG_TC = 1 << 9;
const FLAG_RD = 1 << 8;
const OPCODE_MASK = 0xf << 11;
/** Largest UDP answer without EDNS (RFC 1035), and the most we send with it. */
const UDP_PLAIN_MAX = 512;
const UDP_EDNS_MAX = 4096;
const TCP_MAX = 65535;
/** Instances read per lookup; answers are shuffled and cut to the message size anyway. */
const MAX_INSTANCES = 5000;
const TCP_IDLE_MS = 10_000;
const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;

type Transport = 'udp' | 'tcp';

interface ParsedName {
  kind: 'service' | 'node' | 'addr' | 'apex';
  namespace: string;
  service?: string;
  tag?: string;
  nodeId?: string;
  ipv4?: string;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

export class DnsServer {
  private udp: Socket | null = null;
  private tcp: Server | null = null;
  private readonly connections = new Set<TcpSocket>();
  private readonly log: Logger;
  private readonly domain: string;
  private readonly now: () => number;
  private boundPort = 0;

  constructor(private readonly options: DnsServerOptions) {
    this.log = options.logger.child({ component: 'dns' });
    this.domain = options.domain.toLowerCase().replace(/^\.+|\.+$/g, '');
    this.now = options.now ?? Date.now;
  }

  /** The port both transports listen on (after start). */
  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    // With port 0, the TCP listener takes the port UDP was given; another process may hold it on TCP.
    for (let attempt = 0; ; attempt += 1) {
      const udp = await this.listenUdp(this.options.port);
      const port = udp.address().port;
      try {
        this.tcp = await this.listenTcp(port);
        this.udp = udp;
        this.boundPort = port;
        break;
      } catch (error) {
        await new Promise<void>((resolve) => udp.close(() => resolve()));
        if (this.options.port !== 0 || attempt >= 5) throw error;
      }
    }
    this.log.info({ host: this.options.host, port: this.boundPort, domain: this.domain }, 'dns interface listening (udp, tcp)');
  }

  async stop(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = null;
    this.tcp = null;
    for (const socket of this.connections) socket.destroy();
    this.connections.clear();
    await Promise.all([udp ? new Promise<void>((resolve) => udp.close(() => resolve())) : Promise.resolve(), tcp ? new Promise<void>((resolve) => tcp.close(() => resolve())) : Promise.resolve()]);
  }

  private listenUdp(port: number): Promise<Socket> {
    const socket = createSocket(this.options.host.includes(':') ? 'udp6' : 'udp4');
    socket.on('message', (message: Buffer, remote: RemoteInfo) => {
      const response = this.respond(message, 'udp');
      if (response)
        socket.send(response, remote.port, remote.address, (err) => {
          if (err) this.log.debug({ err }, 'dns udp send failed');
        });
    });
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, this.options.host, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.log.warn({ err }, 'dns udp socket error'));
        resolve(socket);
      });
    });
  }

  private listenTcp(port: number): Promise<Server> {
    const server = createServer((socket) => this.serveTcp(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.options.host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.warn({ err }, 'dns tcp server error'));
        resolve(server);
      });
    });
  }

  /** Messages on a TCP connection are framed by a two-byte length (RFC 1035 4.2.2). */
  private serveTcp(socket: TcpSocket): void {
    this.connections.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', (err) => this.log.debug({ err }, 'dns tcp connection error'));
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < length + 2) break;
        const message = pending.subarray(2, length + 2);
        pending = pending.subarray(length + 2);
        const response = this.respond(message, 'tcp');
        if (response) {
          const frame = Buffer.alloc(2);
          frame.writeUInt16BE(response.length);
          socket.write(Buffer.concat([frame, response]));
        }
      }
    });
  }

  /** Encodes the answer to one wire message; null when it cannot be answered at all. */
  respond(message: Buffer, transport: Transport): Buffer | null {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      if (message.length < 12) return null;
      // Unparseable: FORMERR under the query's id, with no sections.
      return dnsPacket.encode({ type: 'response', id: message.readUInt16BE(0), flags: RCODE.FORMERR, questions: [], answers: [], authorities: [], additionals: [] });
    }
    if (query.type === 'response') return null;
    try {
      return this.encodeFitting(this.answer(query), query, transport);
    } catch (err) {
      this.log.warn({ err }, 'dns query failed');
      return dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags: this.flags(query, RCODE.SERVFAIL), questions: query.questions ?? [], answers: [], authorities: [], additionals: [] });
    }
  }

  private flags(query: DecodedPacket, rcode: number, authoritative = true): number {
    return ((query.flags ?? 0) & (OPCODE_MASK | FLAG_RD)) | (authoritative ? FLAG_AA : 0) | rcode;
  }

  /** The response to a decoded query, before any cut to the transport's size. */
  answer(query: DecodedPacket): Packet {
    const questions = query.questions ?? [];
    const base = { type: 'response' as const, id: query.id ?? 0, questions, answers: [] as Answer[], authorities: [] as Answer[], additionals: [] as Answer[] };
    const opcode = ((query.flags ?? 0) & OPCODE_MASK) >> 11;
    if (opcode !== 0) return { ...base, flags: this.flags(query, RCODE.NOTIMP, false) };
    const question = questions[0];
    if (questions.length !== 1 || question === undefined) return { ...base, flags: this.flags(query, RCODE.FORMERR, false) };
    const qclass = question.class ?? 'IN';
    if (qclass !== 'IN' && qclass !== 'ANY') return { ...base, flags: this.flags(query, RCODE.REFUSED, false) };
    const parsed = this.parse(question.name);
    // Not our zone, and no recursion: refuse, as Consul does without recursors.
    if (parsed === null) return { ...base, flags: this.flags(query, RCODE.REFUSED, false) };
    if (parsed === 'unknown') return { ...base, flags: this.flags(query, RCODE.NXDOMAIN), authorities: [this.soa()] };
    const result = this.lookup(parsed, question);
    if (result === null) return { ...base, flags: this.flags(query, RCODE.NXDOMAIN), authorities: [this.soa()] };
    const { answers, additionals } = result;
    // The name exists: NOERROR, and the SOA says how long "no such record" may be cached.
    return { ...base, flags: this.flags(query, RCODE.NOERROR), answers, additionals, authorities: answers.length === 0 ? [this.soa()] : [] };
  }

  /** Splits a name in our zone; null when the name is outside it, 'unknown' when no form fits. */
  private parse(name: string): ParsedName | 'unknown' | null {
    const trimmed = name.replace(/\.$/, '');
    const lower = trimmed.toLowerCase();
    if (lower !== this.domain && !lower.endsWith(`.${this.domain}`)) return null;
    if (lower === this.domain) return { kind: 'apex', namespace: this.options.defaultNamespace };
    // Labels before the domain, in the case they were asked in (node ids and node types keep theirs).
    const parts = trimmed.slice(0, trimmed.length - this.domain.length - 1).split('.');
    const keyword = (part: string | undefined): string => (part ?? '').toLowerCase();
    let namespace = this.options.defaultNamespace;
    let kindAt = parts.length - 1;
    const last = keyword(parts[kindAt]);
    if (last !== 'service' && last !== 'node' && last !== 'addr' && parts.length >= 2) {
      namespace = keyword(parts[kindAt]);
      kindAt -= 1;
    }
    const kind = keyword(parts[kindAt]);
    const head = parts.slice(0, kindAt);
    if (kind === 'service') {
      if (head.length === 1) return { kind, namespace, service: head[0] as string };
      if (head.length === 2) {
        const [first, second] = head as [string, string];
        // RFC 2782 form `_<service>._<tag>`: `_tcp` means any tag, as in Consul.
        if (first.startsWith('_') && second.startsWith('_')) {
          const tag = second.slice(1);
          return tag.toLowerCase() === 'tcp' ? { kind, namespace, service: first.slice(1) } : { kind, namespace, service: first.slice(1), tag };
        }
        return { kind, namespace, service: second, tag: first };
      }
      return 'unknown';
    }
    if (kind === 'node' && head.length >= 1) return { kind, namespace, nodeId: head.join('.') };
    if (kind === 'addr' && head.length === 1 && /^[0-9a-f]{8}$/i.test(head[0] as string)) {
      const hex = head[0] as string;
      const octets = [0, 2, 4, 6].map((at) => parseInt(hex.slice(at, at + 2), 16));
      return { kind, namespace, ipv4: octets.join('.') };
    }
    return 'unknown';
  }

  private healthy(node: NodeRecord): boolean {
    if (node.status !== 'online' || node.health_status === 'unhealthy') return false;
    // A lapsed lease counts as gone even before the sweeper has written it off.
    return Date.parse(node.last_heartbeat) + node.lease_ttl_ms > this.now();
  }

  private serves(namespace: string): boolean {
    return this.options.namespaces.includes('*') || this.options.namespaces.includes(namespace);
  }

  /** Answer records for a name in our zone; null when the name does not exist (NXDOMAIN). */
  private lookup(name: ParsedName, question: Question): { answers: Answer[]; additionals: Answer[] } | null {
    if ((name.kind === 'node' || name.kind === 'service') && !this.serves(name.namespace)) return null;
    const ttl = this.options.ttlSeconds;
    const wantsA = question.type === 'A' || (question.type as string) === 'ANY';
    const answers: Answer[] = [];
    const additionals: Answer[] = [];
    switch (name.kind) {
      case 'apex':
        if (question.type === 'SOA') answers.push(this.soa());
        return { answers, additionals };
      case 'addr':
        if (wantsA) answers.push({ type: 'A', name: question.name, ttl, data: name.ipv4 as string });
        return { answers, additionals };
      case 'node': {
        const node = this.options.nodes.get(name.namespace, name.nodeId as string);
        if (!node || node.status !== 'online') return null;
        const ip = ipv4Of(node);
        if (wantsA && ip !== null) answers.push({ type: 'A', name: question.name, ttl, data: ip });
        return { answers, additionals };
      }
      case 'service': {
        const page = this.options.nodes.query({
          namespace: name.namespace,
          node_type: name.service,
          status: ['online'],
          limit: MAX_INSTANCES,
          ...(name.tag === undefined ? {} : { labels: [name.tag] }),
        });
        const instances = shuffle(page.nodes.filter((node) => this.healthy(node)));
        if (instances.length === 0) return null;
        const seen = new Set<string>();
        for (const node of instances) {
          const service = serviceAddress(node);
          const ip = ipv4Of(node, service);
          if (wantsA) {
            if (ip === null || seen.has(ip)) continue;
            seen.add(ip);
            answers.push({ type: 'A', name: question.name, ttl, data: ip });
          } else if (question.type === 'SRV') {
            if (service === null) continue;
            const target = this.targetName(node, ip, service.host);
            const key = `${target} ${service.port}`;
            if (seen.has(key)) continue;
            seen.add(key);
            answers.push({ type: 'SRV', name: question.name, ttl, data: { priority: 1, weight: 1, port: service.port, target } });
            if (ip !== null && !additionals.some((record) => record.name === target)) additionals.push({ type: 'A', name: target, ttl, data: ip });
          }
        }
        return { answers, additionals };
      }
    }
  }

  /**
   * The SRV target of an instance, as Consul names them: `<node>.node[.<namespace>].<domain>` when the
   * node id is a DNS label and the instance has an IPv4 address, else `<hex-ip>.addr.<domain>`, else
   * the endpoint's own host name.
   */
  private targetName(node: NodeRecord, ip: string | null, host: string): string {
    const namespace = node.namespace === this.options.defaultNamespace ? '' : `.${node.namespace}`;
    if (ip !== null && DNS_LABEL.test(node.node_id)) return `${node.node_id}.node${namespace}.${this.domain}`;
    if (ip !== null)
      return `${ip
        .split('.')
        .map((octet) => Number(octet).toString(16).padStart(2, '0'))
        .join('')}.addr.${this.domain}`;
    return host;
  }

  private soa(): SoaAnswer {
    return {
      type: 'SOA',
      name: this.domain,
      ttl: this.options.ttlSeconds,
      data: {
        mname: `ns.${this.domain}`,
        rname: `hostmaster.${this.domain}`,
        serial: Math.floor(this.now() / 1000),
        refresh: 3600,
        retry: 600,
        expire: 86400,
        minimum: this.options.ttlSeconds,
      },
    };
  }

  /** Encodes the response within the transport's size, dropping records and setting TC when cut. */
  private encodeFitting(response: Packet, query: DecodedPacket, transport: Transport): Buffer {
    const opt = (query.additionals ?? []).find((record) => record.type === 'OPT');
    const limit = transport === 'tcp' ? TCP_MAX : opt && 'udpPayloadSize' in opt ? Math.min(Math.max(opt.udpPayloadSize, UDP_PLAIN_MAX), UDP_EDNS_MAX) : UDP_PLAIN_MAX;
    const edns: Answer[] = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: UDP_EDNS_MAX, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [];
    const packet: Packet = { ...response, additionals: [...(response.additionals ?? []), ...edns] };
    if (dnsPacket.encodingLength(packet) <= limit) return dnsPacket.encode(packet);
    // Too big: glue first, then answers, until it fits; the client retries over TCP.
    const answers = [...(response.answers ?? [])];
    const glue = [...(response.additionals ?? [])];
    let cut: Packet = packet;
    while (dnsPacket.encodingLength(cut) > limit && (glue.length > 0 || answers.length > 0)) {
      if (glue.length > answers.length) glue.pop();
      else answers.pop();
      cut = { ...response, flags: (response.flags ?? 0) | FLAG_TC, answers, additionals: [...glue, ...edns] };
    }
    return dnsPacket.encode(cut);
  }
}
