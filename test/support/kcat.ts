// kcat (librdkafka, from Debian's packages): a Kafka client that is not ours, to produce what
// other nodes would and to read what rollcall publishes. `scripts/test-tools ensure` installs it.
import { spawn } from 'node:child_process';
import { KAFKA_BROKERS } from './kafka.js';

export interface KcatMessage {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  payload: string | null;
  headers: Record<string, string>;
}

function run(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('kcat', ['-b', KAFKA_BROKERS, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', (error) => reject(new Error(`kcat did not start (${error.message}); install it with \`bash scripts/test-tools ensure\``)));
    child.once('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`kcat ${args.join(' ')} exited ${code}: ${stderr}`))));
    child.stdin.end(input ?? '');
  });
}

/** Produces one message (a single line: the value must not contain a newline). */
export async function kcatProduce(topic: string, key: string | null, value: string, headers: Record<string, string> = {}): Promise<void> {
  if (value.includes('\n')) throw new Error('kcatProduce sends one line');
  const args = ['-P', '-t', topic, ...(key === null ? [] : ['-k', key])];
  for (const [name, header] of Object.entries(headers)) args.push('-H', `${name}=${header}`);
  await run(args, `${value}\n`);
}

/** Reads a topic from the beginning to its current end. */
export async function kcatConsume(topic: string): Promise<KcatMessage[]> {
  const out = await run(['-C', '-t', topic, '-o', 'beginning', '-e', '-J', '-q']);
  return out
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => {
      const raw = JSON.parse(line) as { topic: string; partition: number; offset: number; key: string | null; payload: string | null; headers?: string[] };
      const headers: Record<string, string> = {};
      const list = raw.headers ?? [];
      for (let i = 0; i + 1 < list.length; i += 2) headers[list[i] as string] = list[i + 1] as string;
      return { topic: raw.topic, partition: raw.partition, offset: raw.offset, key: raw.key, payload: raw.payload, headers };
    });
}
