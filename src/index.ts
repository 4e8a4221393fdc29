// The package's library surface: the client SDK, the join agent, the server, and the model's types.
export { RollcallClient, type ListNodesQuery, type NodeList, type PresentedNode, type RegisterResponse } from './client/rollcall-client.js';
export { DagiAgent, type DagiAgentOptions } from './agent/dagi-agent.js';
export { startServer, type RunningServer } from './server.js';
export { loadConfig, type Config } from './config/config.js';
export { createLogger } from './config/logger.js';
export { RollcallError, ERROR_CODES, isRollcallError, type ErrorCode } from './domain/errors.js';
export type { NodeRecord, Registration, TopologyChange, ChangeType, NodeStatus, HealthStatus, IntrospectionPayload, DagiRegistration } from './domain/node.js';
