// Compiled by `npm run typecheck` (tsc --strict): the public types, and the api methods typed from the spec.
import { connect, GatewayError, type Event, type Schemas } from '../src/index.js';

async function usage(): Promise<void> {
  const client = connect('http://127.0.0.1:5000', { token: 't', timeout: 5000, backoff: { base: 100 } });
  client.on('state', ({ state }) => { const s: 'connecting' | 'open' | 'reconnecting' | 'closed' = state; void s; });
  const login = await client.api.createToken({ body: { username: 'alice', password: 'correct horse' } });
  const token: string = login.body.token.value;
  client.setToken(token);
  const page = await client.api.listEmails({ query: { label: 'inbox', limit: 20 } });
  const first: Schemas['Email'] | undefined = page.body.emails[0];
  const one = await client.api.getEmail({ path: { id: 'abc' } });
  const subject: string = one.body.email.subject;
  const me = await client.api.getMe();
  const address: string = me.body.account.address;
  const sent = await client.api.sendEmail({ body: { to: ['bob@localhost'], text: 'hi' } });
  const id: string = sent.body.email.id;
  const raw = await client.request<{ success: boolean }>('GET', '/');
  const ok: boolean = raw.body.success;
  const subscription = client.subscribe(token, {
    events: ['receipt'],
    onEvent: (event: Event) => { const c: string = event.cursor; void c; },
    getToken: async () => (await client.api.renewToken()).body.token.value,
  });
  await subscription.unsubscribe();
  try {
    await client.api.getRoot();
  } catch (e) {
    if (e instanceof GatewayError && e.outcomeUnknown) throw e;
  }
  // @ts-expect-error getEmail needs its path parameter
  await client.api.getEmail({});
  // @ts-expect-error sendEmail's body is typed
  await client.api.sendEmail({ body: { to: 'not a list' } });
  void [first, subject, address, id, ok];
  client.close();
}
void usage;
