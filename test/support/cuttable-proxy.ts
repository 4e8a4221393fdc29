// A TCP proxy to PostgreSQL that a test can cut (every connection dropped, new ones refused) and
// restore on the same port: the store going away mid-flight. It can also hold new connections
// (accepted, not yet forwarded) to catch a client in the middle of connecting.
import { connect, createServer, type Socket } from 'node:net';
import { ClosableServer } from './closable-server.js';

/** Forwards a local port to PostgreSQL until cut; listen() again serves the same port. */
export class CuttableProxy {
  private readonly endpoint: ClosableServer;
  private holding = false;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly target: { host: string; port: number }) {
    this.endpoint = new ClosableServer(() =>
      createServer((client) => {
        client.on('error', () => client.destroy());
        if (this.holding) this.waiting.push(() => this.forward(client));
        else this.forward(client);
      }),
    );
  }

  get port(): number {
    return this.endpoint.port;
  }

  /** New connections held so far (see hold). */
  get held(): number {
    return this.waiting.length;
  }

  listen(): Promise<void> {
    return this.endpoint.listen();
  }

  cut(): Promise<void> {
    return this.endpoint.close();
  }

  /** From now on new connections are accepted but not forwarded until resume(): their clients wait. */
  hold(): void {
    this.holding = true;
  }

  /** Forwards the held connections, and new ones again. */
  resume(): void {
    this.holding = false;
    for (const start of this.waiting.splice(0)) start();
  }

  private forward(client: Socket): void {
    if (client.destroyed) return;
    const upstream = connect(this.target.port, this.target.host);
    this.endpoint.track(upstream);
    upstream.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }
}
