// Types of the gateway's JavaScript client. The API's own types (paths, bodies, responses) are
// generated from docs/openapi.yaml into api.d.ts when the package is installed or packed (its
// `prepare` script; `npm run generate` makes it again), so they cannot drift.

import type { components, operations as Operations } from './api.js';

export type { components, paths } from './api.js';
export type Schemas = components['schemas'];

/** The states a UI can show. */
export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface BackoffPolicy {
  /** ms: the cap of the first wait (doubling each attempt). Default 500. */
  base?: number;
  /** ms: the largest cap. Default 30000. */
  max?: number;
}

export interface ConnectOptions {
  /** A sockjs-client constructor; without it the native WebSocket on /ws/websocket is used. */
  SockJS?: new (url: string, reserved?: null, options?: Record<string, unknown>) => unknown;
  /** A WebSocket constructor, where there is no global one. */
  WebSocket?: new (url: string) => unknown;
  /** The SockJS transports to allow (sockjs-client's `transports` option). */
  transports?: string[];
  /** Other options for the SockJS constructor (e.g. `{timeout: 10000}`). */
  sockjs?: Record<string, unknown>;
  /** The bearer token the api methods send (see setToken). */
  token?: string;
  /** ms a request waits for its answer. Default 30000. */
  timeout?: number;
  /** Requests in flight at once until the server says (GET / limits). Default 32. */
  maxInflight?: number;
  backoff?: BackoffPolicy;
  /** Where the SockJS endpoint is. Default '/ws'. */
  path?: string;
}

export interface Reply<Body = unknown> {
  status: number;
  /** Header name -> values, as the server sent them. */
  headers: Record<string, string[]>;
  /** The body: parsed when it is JSON, a Uint8Array when binary (base64 on the wire), else text. */
  body: Body;
}

export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string | string[]>;
  /** ms; default the client's timeout. */
  timeout?: number;
}

export declare class GatewayError extends Error {
  /** The server's error code (e.g. `rate_limited`, `invalid_headers`), or `timeout` or `closed`. */
  code: string;
  /** A write that was sent and never answered: it may or may not have been done. */
  outcomeUnknown: boolean;
  /** The request's id on the session, when it had one. */
  id?: string;
}

export type EventKind = 'receipt' | 'delivery' | 'deferred' | 'failed';

/** Why one recipient has not taken an outbound email (`code`: the SMTP reply's, null without one). */
export interface RecipientFailure {
  recipient: string;
  code: number | null;
  text: string;
  permanent: boolean;
}

/** What the server pushes for the subscribed account (see docs/protocol.md). */
export interface Event {
  type: EventKind;
  /** The email's id. */
  id: string;
  /** The subject. */
  name: string;
  thread: string | null;
  labels: string[];
  cursor: string;
  /** deferred and failed: the attempt that failed (1 for the first). */
  attempt?: number;
  /** deferred: the SMTP reply that made it wait (code null without one), and when the next attempt is due. */
  reply?: { code: number | null; text: string };
  next_attempt?: string;
  /** failed: why, as one line. */
  reason?: string;
  /** deferred and failed: per recipient, why it has not taken the email. */
  recipients?: RecipientFailure[];
  /** detail 'message' and 'full': what a UI shows in a row. */
  from?: string;
  to?: string[];
  cc?: string[];
  subject?: string;
  date?: string;
  snippet?: string;
  size?: number | null;
  attachments?: number;
  /** detail 'full': the bodies. */
  text?: string | null;
  html?: string | null;
}

export interface SubscribeOptions {
  /** Only these kinds. */
  events?: EventKind[];
  /** How much of each email an event carries: 'summary' (the default), 'message' or 'full'. */
  detail?: 'summary' | 'message' | 'full';
  /** Start after this cursor (e.g. one kept from an earlier run). */
  since?: string;
  onEvent?: (event: Event) => void;
  /** The server could not replay what was missed: reload your lists. */
  onResync?: () => void;
  /** The subscription ended for good: `revoked`, `account_deleted`, `invalid_token`, `expired`. */
  onEnd?: (reason: string) => void;
  /** A fresh token, asked for before the bound one expires; the subscription moves to it with no gap. */
  getToken?: () => Promise<string>;
}

export declare class Subscription {
  readonly token: string;
  /** The cursor of the last event delivered (or the one `subscribed` gave before any). */
  readonly cursor: string | null;
  readonly active: boolean;
  unsubscribe(): Promise<void>;
}

// -- the typed API ------------------------------------------------------------

type Params<Op> = Op extends { parameters: infer P } ? P : never;
type PathOf<Op> = Params<Op> extends { path: infer T } ? NonNullable<T> : never;
type QueryOf<Op> = Params<Op> extends { query?: infer T } ? NonNullable<T> : never;
type RequestBodyOf<Op> = Op extends { requestBody?: infer R } ? NonNullable<R> : never;
type BodyOf<Op> = RequestBodyOf<Op> extends { content: { 'application/json': infer B } } ? B : never;
type BodyRequired<Op> = Op extends { requestBody: { content: unknown } } ? true : false;
type Ok<Op> = Op extends { responses: infer R }
  ? { [S in keyof R]: S extends 200 | 201 | 204 ? (R[S] extends { content: { 'application/json': infer B } } ? B : undefined) : never }[keyof R]
  : never;

/** What one api method takes: the path parameters, query, body and extra headers it has. */
export type Args<Op> =
  ([PathOf<Op>] extends [never] ? {} : { path: PathOf<Op> })
  & ([QueryOf<Op>] extends [never] ? {} : { query?: QueryOf<Op> })
  & ([BodyOf<Op>] extends [never] ? {} : BodyRequired<Op> extends true ? { body: BodyOf<Op> } : { body?: BodyOf<Op> })
  & { headers?: Record<string, string> };

export interface CallOptions {
  timeout?: number;
  /** The token for this call (default: the client's). */
  token?: string;
}

/** One method per operation of docs/openapi.yaml, named by its operationId. */
export type Api = {
  [K in keyof Operations]: {} extends Args<Operations[K]>
    ? (args?: Args<Operations[K]>, options?: CallOptions) => Promise<Reply<Ok<Operations[K]>>>
    : (args: Args<Operations[K]>, options?: CallOptions) => Promise<Reply<Ok<Operations[K]>>>;
};

export declare class Client {
  readonly state: State;
  /** The transport in use once open (sockjs-client's name, or `websocket-raw`). */
  readonly transportName: string | null;
  readonly token: string | null;
  readonly api: Api;
  on(event: 'state', listener: (change: { state: State; transport: string | null }) => void): () => void;
  on(event: 'open', listener: (info: { transport: string }) => void): () => void;
  on(event: 'close', listener: (why: { code: number; reason: string }) => void): () => void;
  ready(): Promise<void>;
  request<Body = unknown>(method: string, path: string, options?: RequestOptions): Promise<Reply<Body>>;
  subscribe(token: string, options?: SubscribeOptions): Subscription;
  setToken(token: string | null): void;
  close(): void;
}

export declare function connect(url: string, options?: ConnectOptions): Client;
export declare function compareCursors(a: string, b: string): number;
export declare function tokenExpiry(token: string): number | null;
export declare function backoffDelay(attempt: number, policy?: BackoffPolicy, random?: () => number): number;
export declare const DEFAULT_BACKOFF: Required<BackoffPolicy>;
export declare const operations: Record<keyof Operations, {
  method: string; path: string; auth: boolean; body: boolean; headers: string[];
}>;
