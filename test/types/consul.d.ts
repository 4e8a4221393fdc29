// The part of the `consul` npm client (1.x, untyped) that the Consul-compatible API tests use.
declare module 'consul' {
  import type { EventEmitter } from 'node:events';

  interface CommonOptions {
    token?: string;
    index?: string | bigint;
    wait?: string;
    timeout?: number | string;
    filter?: string;
  }
  interface ResponseOptions {
    ctx?: unknown;
  }

  interface Watch extends EventEmitter {
    end(): void;
    isRunning(): boolean;
  }

  class Consul {
    constructor(options?: { host?: string; port?: number; secure?: boolean; defaults?: CommonOptions });
    agent: {
      service: {
        register(options: Record<string, unknown>): Promise<void>;
        deregister(options: string | ({ id: string } & CommonOptions)): Promise<void>;
        list(options?: CommonOptions): Promise<Record<string, Record<string, unknown>>>;
      };
      check: {
        pass(options: string | ({ id: string; note?: string } & CommonOptions)): Promise<void>;
        warn(options: string | ({ id: string; note?: string } & CommonOptions)): Promise<void>;
        fail(options: string | ({ id: string; note?: string } & CommonOptions)): Promise<void>;
      };
    };
    catalog: {
      service: {
        list(options?: CommonOptions): Promise<Record<string, string[]>>;
        nodes(options: string | ({ service: string; tag?: string } & CommonOptions)): Promise<Array<Record<string, unknown>>>;
      };
    };
    health: {
      /** A property, not a method: watches call it with their own `this`, as the client's README shows. */
      service: (options: string | ({ service: string; passing?: boolean; tag?: string } & CommonOptions & ResponseOptions)) => Promise<unknown>;
    };
    watch(options: { method: (options: never) => Promise<unknown>; options?: Record<string, unknown> & CommonOptions; backoffFactor?: number; maxAttempts?: number }): Watch;
    destroy(): void;
  }
  export default Consul;
}
