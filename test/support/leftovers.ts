// Run by scripts/run-tests.mjs after every test file has ended: finds the databases and Kafka topics
// that the run tagged (argv[2]) and that are still there, prints one line each, and removes them (the
// run's migrated template database too, without a line: see postgres.ts).
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { KAFKA_BROKERS } from './kafka.js';
import { ADMIN_URL, templateDatabaseOf } from './postgres.js';

const tag = process.argv[2] ?? '';
if (!/^[a-z0-9]{1,12}$/.test(tag)) throw new Error(`usage: leftovers.ts <run tag>, got '${tag}'`);

const admin = new pg.Client({ connectionString: ADMIN_URL });
await admin.connect();
try {
  const { rows } = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`%\\_${tag}\\_%`]);
  for (const { datname } of rows) {
    // The run's migrated template outlives its files on purpose: dropped here, not a leftover.
    if (datname !== templateDatabaseOf(tag)) process.stdout.write(`database ${datname}\n`);
    await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  }
} finally {
  await admin.end();
}

// A run that never reached Kafka (the unit tier alone) has nothing there to look for.
const kafka = new Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'rollcall-test-leftovers', logLevel: logLevel.NOTHING, retry: { retries: 1 }, connectionTimeout: 2000 }).admin();
const reachable = await kafka.connect().then(
  () => true,
  () => false,
);
if (reachable) {
  try {
    const topics = (await kafka.listTopics()).filter((topic) => topic.startsWith(`t${tag}-`));
    for (const topic of topics) process.stdout.write(`Kafka topic ${topic}\n`);
    if (topics.length > 0) await kafka.deleteTopics({ topics, timeout: 30_000 });
  } finally {
    await kafka.disconnect();
  }
}
