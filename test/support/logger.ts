// A silent logger for tests (ROLLCALL_LOG_LEVEL=debug shows it).
import { createLogger } from '../../src/config/logger.js';

export const testLogger = createLogger(process.env.ROLLCALL_LOG_LEVEL ?? 'silent');
