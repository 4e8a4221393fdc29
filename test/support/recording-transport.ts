// An agent transport that wraps another and keeps what it delivered; heartbeats can be made to fail.
import type { AgentEventKind, AgentTransport, PublishOutcome } from '../../src/agent/node-agent.js';
import type { Envelope } from '../../src/domain/schemas.js';

export class RecordingTransport implements AgentTransport {
  readonly sent: Array<{ kind: AgentEventKind; event: Envelope; outcome: PublishOutcome }> = [];
  failHeartbeats = false;

  constructor(private readonly inner: AgentTransport) {}

  async publish(kind: AgentEventKind, event: Envelope): Promise<PublishOutcome> {
    if (kind === 'heartbeat' && this.failHeartbeats) throw new Error('network down');
    const outcome = await this.inner.publish(kind, event);
    this.sent.push({ kind, event, outcome });
    return outcome;
  }

  onRegistryRequest(listener: (request: Envelope) => void): Promise<void> {
    return this.inner.onRegistryRequest(listener);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  of(kind: AgentEventKind): Envelope[] {
    return this.sent.filter((entry) => entry.kind === kind).map((entry) => entry.event);
  }
}
