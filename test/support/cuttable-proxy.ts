// A TCP proxy to PostgreSQL that a test can cut (every connection dropped, new ones refused) and
// restore on the same port: the store going away mid-flight.
import { connect, createServer } from 'node:net';
import { ClosableServer } from './closable-server.js';

/** Forwards a local port to PostgreSQL until cut; listen() again serves the same port. */
export class CuttableProxy {
  private readonly endpoint: ClosableServer;

  constructor(private readonly target: { host: string; port: number }) {
    this.endpoint = new ClosableServer(() =>
      createServer((client) => {
        const upstream = connect(this.target.port, this.target.host);
        this.endpoint.track(upstream);
        for (const socket of [client, upstream]) socket.on('error', () => socket.destroy());
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      }),
    );
  }

  get port(): number {
    return this.endpoint.port;
  }

  listen(): Promise<void> {
    return this.endpoint.listen();
  }

  cut(): Promise<void> {
    return this.endpoint.close();
  }
}
