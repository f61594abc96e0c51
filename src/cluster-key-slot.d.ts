/** The hash slot of a key, as Redis Cluster computes it (the package ioredis uses, which ships no types). */
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string): number
}
