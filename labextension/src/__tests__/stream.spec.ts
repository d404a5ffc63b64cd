import { SessionStream } from '../stream';
import { FakeServer, FakeWebSocket, flush, session, transcript } from './fakes';

function makeStream(server = new FakeServer()) {
  server.sessions.set('s1', session('s1'));
  FakeWebSocket.reset();
  const stream = new SessionStream(server.api, 's1', {
    WebSocket: FakeWebSocket as any,
    baseDelay: 5,
    maxDelay: 20,
    batchMs: 1,
    window: null
  });
  return { server, stream };
}

describe('SessionStream', () => {
  it('replays from 0, goes live, and batches renders', async () => {
    const { stream } = makeStream();
    const renders: number[] = [];
    stream.changed.connect((_, s) => renders.push(s.items.length));
    stream.start();
    const ws = FakeWebSocket.last;
    expect(ws.after).toBe(0);
    expect(stream.status).toBe('connecting');
    ws.open();
    expect(stream.status).toBe('live');
    ws.emit(...transcript());
    await flush(10);
    expect(renders).toEqual([8]); // one render for the burst
    expect(stream.lastSeq).toBe(transcript().length);
    stream.dispose();
  });

  it('reconnects after a drop with after=<last seq> and never duplicates', async () => {
    const { stream } = makeStream();
    const evs = transcript();
    const seen: number[] = [];
    stream.events.connect((_, ev) => seen.push(ev.seq));
    stream.start();
    FakeWebSocket.last.open();
    FakeWebSocket.last.emit(...evs.slice(0, 10));
    FakeWebSocket.last.drop(1006);
    expect(stream.status).toBe('reconnecting');
    expect(stream.statusText).toMatch(/^reconnecting/);
    await flush(15);
    const ws2 = FakeWebSocket.last;
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(ws2.after).toBe(10);
    ws2.open();
    // a server replaying a little too much (or a second source) must not duplicate anything
    ws2.emit(...evs.slice(5));
    await flush(5);
    expect(seen).toEqual(evs.map(e => e.seq));
    expect(stream.state.items.filter(i => i.kind === 'assistant')).toHaveLength(1);
    expect(stream.state.byKey.get('a:a1')!.text).toBe('Here is **bold** text.');
    stream.dispose();
  });

  it('backs off between failed attempts and resets after success', async () => {
    const { stream } = makeStream();
    stream.start();
    FakeWebSocket.last.drop();
    await flush(8);
    FakeWebSocket.last.drop();
    await flush(15);
    expect(FakeWebSocket.instances.length).toBe(3);
    FakeWebSocket.last.open();
    expect(stream.status).toBe('live');
    stream.dispose();
  });

  it('stops for good when the server says the session was deleted', async () => {
    const { stream } = makeStream();
    stream.start();
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop(1000, 'session deleted');
    expect(stream.status).toBe('closed');
    await flush(30);
    expect(FakeWebSocket.instances).toHaveLength(1);
    stream.dispose();
  });

  it('asks the API after repeated failures and closes on a 404', async () => {
    const { server, stream } = makeStream();
    server.sessions.clear();
    stream.start();
    for (let i = 0; i < 3; i++) {
      FakeWebSocket.last.drop();
      await flush(25);
    }
    expect(stream.status).toBe('closed');
    expect(server.calls.some(c => c.path === 'sessions/s1')).toBe(true);
    stream.dispose();
  });

  it('reconnectNow drops the socket and resumes from the last seq', () => {
    const { stream } = makeStream();
    stream.start();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.emit(...transcript().slice(0, 3));
    stream.reconnectNow();
    expect(ws.closed).toBe(true);
    expect(FakeWebSocket.last.after).toBe(3);
    stream.dispose();
    expect(FakeWebSocket.last.closed).toBe(true);
  });
});
