// Errors a call can end with. Every rejection of the library is a GatewayError.

/**
 * Why a call failed:
 * - `code` is the server's error code (`rate_limited`, `invalid_token`, ...), or one of the
 *   library's own: `timeout` (no answer in time), `closed` (the client was closed, or the
 *   session dropped and the call could not be retried).
 * - `outcomeUnknown` is true when a write may or may not have been done: it was sent and no
 *   answer came. Retry it only with the same `Idempotency-Key` (sendEmail sets one for you).
 */
export class GatewayError extends Error {
  constructor(code, message, { outcomeUnknown = false, id = undefined } = {}) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.outcomeUnknown = outcomeUnknown;
    this.id = id;
  }
}
