// Reconnect delays: exponential backoff with full jitter.

/** The default reconnect policy: waits of up to 0.5 s, 1 s, 2 s, ... 30 s, each drawn at random below the cap. */
export const DEFAULT_BACKOFF = { base: 500, max: 30000 };

/**
 * The delay before reconnect attempt `attempt` (0 for the first), in ms: a random wait between 0
 * and min(max, base * 2^attempt) ("full jitter"), so clients dropped together do not return together.
 */
export function backoffDelay(attempt, { base = DEFAULT_BACKOFF.base, max = DEFAULT_BACKOFF.max } = {},
  random = Math.random) {
  return random() * Math.min(max, base * 2 ** Math.min(attempt, 30));
}
