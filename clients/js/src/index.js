// The gateway's JavaScript client: requests and live events over one SockJS (or WebSocket) session.
export { connect, Client } from './client.js';
export { GatewayError } from './errors.js';
export { Subscription, compareCursors, tokenExpiry } from './subscription.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export { operations } from './operations.js';
