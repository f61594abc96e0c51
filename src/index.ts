/** The package's public API, for embedding the service or its parts. */
export { buildApp } from './app.js'
export { loadConfig, ConfigSchema, type Config } from './config.js'
export { buildSimulator } from './simulator/app.js'
export { STATUS, RANK, type Status } from './domain/status.js'
export { normalizePhone } from './domain/phone.js'
export { analyzeText, MAX_SEGMENTS } from './domain/segments.js'
export { verifyWebhook, signedHeaders } from './webhooks.js'
