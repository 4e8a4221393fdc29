// Builds the event bus the configuration asks for: Kafka when brokers are set, else in-process.
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { EventBus } from './bus.js';
import { KafkaBus } from './kafka-bus.js';
import { MemoryBus } from './memory-bus.js';

export async function openBus(config: Config, logger: Logger): Promise<EventBus> {
  if (!config.kafkaBrokers) return new MemoryBus({ defaultPartitions: 1 });
  const bus = new KafkaBus({
    brokers: config.kafkaBrokers
      .split(',')
      .map((broker) => broker.trim())
      .filter((broker) => broker.length > 0),
    clientId: config.kafkaClientId,
    replicationFactor: config.kafkaReplicationFactor,
    logger,
  });
  await bus.connect();
  return bus;
}
