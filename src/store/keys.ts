/**
 * Every Redis key name of the service. Per-message keys carry the message id as a hash tag
 * (`{msg_…}`), so that the record, its events and its report fingerprints live in one slot and every
 * script touches one slot, as Redis Cluster requires.
 */
export interface Keys {
  message(id: string): string
  events(id: string): string
  fingerprints(id: string): string
  idempotency(scope: string, key: string): string
  outbox(): string
  unmatched(): string
  sendBudget(second: number): string
}

export function makeKeys(prefix: string): Keys {
  return {
    message: (id) => `${prefix}:msg:{${id}}`,
    events: (id) => `${prefix}:msg:{${id}}:ev`,
    fingerprints: (id) => `${prefix}:msg:{${id}}:fp`,
    idempotency: (scope, key) => `${prefix}:idem:{${scope}}:${key}`,
    outbox: () => `${prefix}:outbox`,
    unmatched: () => `${prefix}:dlr:unmatched`,
    sendBudget: (second) => `${prefix}:budget:send:${second}`,
  }
}
