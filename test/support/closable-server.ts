// A loopback server a test can take down and bring back on the same port: every connection
// dropped and new ones refused until listen() again (the peer "unreachable", then back).
import type { Server, Socket } from 'node:net';

export class ClosableServer {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  /** `create` builds the server anew each time; the first listen picks a free port, later ones reuse it. */
  constructor(private readonly create: () => Server) {}

  /** Sockets to drop at close() besides the server's own connections (e.g. a proxy's upstreams). */
  track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
  }

  async listen(): Promise<void> {
    if (this.server) return;
    const server = this.create();
    server.on('connection', (socket: Socket) => this.track(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
