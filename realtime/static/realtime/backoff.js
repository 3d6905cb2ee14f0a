// Reconnect delays.
import { DEFAULTS } from "./constants.js";

/**
 * Exponential backoff with full jitter: a uniformly random delay in
 * [0, min(maxDelay, baseDelay * 2^attempt)). Thousands of clients that lost the same server
 * spread their reconnects over the whole window instead of arriving together.
 */
export function backoffDelay(attempt, { baseDelay = DEFAULTS.baseDelay, maxDelay = DEFAULTS.maxDelay, random = Math.random } = {}) {
  const exp = Math.min(Math.max(0, attempt | 0), 30);
  const cap = Math.min(maxDelay, baseDelay * 2 ** exp);
  const r = Math.min(Math.max(Number(random()) || 0, 0), 0.999999999);
  return Math.floor(r * cap);
}
