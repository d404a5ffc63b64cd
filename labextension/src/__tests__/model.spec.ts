import { SessionsModel } from '../model';
import { FakeServer, FakeWebSocket, flush, session } from './fakes';

function setup() {
  const server = new FakeServer();
  server.sessions.set('a', session('a', { phase: 'Running', agent_state: 'working', last_seq: 5 }));
  FakeWebSocket.reset();
  const model = new SessionsModel(server.api);
  const changes: number[] = [];
  model.changed.connect(() => changes.push(model.sessions.length));
  return { server, model, changes };
}

const listCalls = (server: FakeServer) => server.calls.filter(c => c.method === 'GET' && c.path === 'sessions').length;

describe('SessionsModel watch', () => {
  it('opens the watch URL with the token and takes the snapshot as the list', () => {
    const { model, changes } = setup();
    model.watch({ WebSocket: FakeWebSocket as any });
    const ws = FakeWebSocket.last;
    expect(ws.url).toBe('ws://localhost:8888/user/ada/jupyter-sessions/api/sessions/watch?token=secret-token');
    expect(model.live).toBe(false);
    ws.open();
    ws.emit({ type: 'snapshot', sessions: [session('b'), session('c')] });
    expect(model.live).toBe(true);
    expect(model.sessions.map(s => s.id).sort()).toEqual(['b', 'c']);
    expect(changes).toEqual([2]);
    model.dispose();
    expect(ws.closed).toBe(true);
  });

  it('applies changes and deletions, ignoring repeats and changes older than what it has', () => {
    const { model, changes } = setup();
    model.watch({ WebSocket: FakeWebSocket as any });
    const ws = FakeWebSocket.last;
    ws.open();
    ws.emit({ type: 'snapshot', sessions: [session('a', { phase: 'Running', last_seq: 5 })] });
    const pending = session('n', { phase: 'Pending', last_seq: 1 });
    ws.emit({ type: 'changed', session: pending });
    expect(model.get('n')!.phase).toBe('Pending');
    ws.emit({ type: 'changed', session: { ...pending } }); // the same again
    expect(changes).toEqual([1, 2]);
    ws.emit({ type: 'changed', session: session('n', { phase: 'Running', last_seq: 3 }) });
    expect(model.get('n')!.phase).toBe('Running');
    // an open view's stream got further than the row this message was read from
    model.applyEvent('a', { type: 'PHASE_CHANGED', seq: 9, data: { phase: 'Stopping', reason: 'stop' } });
    ws.emit({ type: 'changed', session: session('a', { phase: 'Running', last_seq: 8 }) });
    expect(model.get('a')!.phase).toBe('Stopping');
    ws.emit({ type: 'deleted', id: 'n' });
    expect(model.get('n')).toBeUndefined();
    ws.emit('not json at all' as any);
    expect(model.sessions.map(s => s.id)).toEqual(['a']);
    model.dispose();
  });

  it('polls only while the watch is down, and reconnects with a fresh snapshot', async () => {
    const { server, model } = setup();
    model.poll(5);
    model.watch({ WebSocket: FakeWebSocket as any, baseDelay: 10, maxDelay: 20 });
    await flush(30); // not connected yet: the fallback polls
    expect(listCalls(server)).toBeGreaterThan(0);
    FakeWebSocket.last.open();
    FakeWebSocket.last.emit({ type: 'snapshot', sessions: [session('a')] });
    await flush(10); // a poll already on its way may still land
    const before = listCalls(server);
    await flush(40);
    expect(listCalls(server)).toBe(before); // live: nothing polls
    FakeWebSocket.last.drop(1006);
    expect(model.live).toBe(false);
    await flush(40); // dropped: polling resumes, and a new socket is tried
    expect(listCalls(server)).toBeGreaterThan(before);
    expect(FakeWebSocket.instances).toHaveLength(2); // the first, and the one after the drop
    const ws = FakeWebSocket.last;
    ws.open();
    ws.emit({ type: 'snapshot', sessions: [session('z')] });
    expect(model.live).toBe(true);
    expect(model.sessions.map(s => s.id)).toEqual(['z']);
    model.dispose();
  });

  it('never steps a session back: a late request answer or a stale list keeps the newer state', async () => {
    const { server, model } = setup();
    model.upsert(session('a', { phase: 'Pending', last_seq: 10 })); // resume accepted
    model.applyEvent('a', { type: 'PHASE_CHANGED', seq: 12, data: { phase: 'Running', reason: 'sandbox ready' } });
    model.upsert(session('a', { phase: 'Pending', last_seq: 10 })); // the same answer, delivered late
    expect(model.get('a')!.phase).toBe('Running');
    server.sessions.set('a', session('a', { phase: 'Creating', last_seq: 11 })); // a poll read before seq 12
    await model.refresh();
    expect(model.get('a')!.phase).toBe('Running');
    server.sessions.set('a', session('a', { phase: 'Stopped', last_seq: 15 })); // a newer one wins
    await model.refresh();
    expect(model.get('a')!.phase).toBe('Stopped');
    model.dispose();
  });
});
