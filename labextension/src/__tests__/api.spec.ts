import { ApiError, filenameOf } from '../api';
import { FakeServer, session } from './fakes';

describe('SessionsApi', () => {
  it("calls under the server's base URL (JupyterHub's /user/<name>/) with the token", async () => {
    const server = new FakeServer();
    server.sessions.set('a', session('a'));
    const list = await server.api.list();
    expect(list.map(s => s.id)).toEqual(['a']);
    const call = server.calls[0];
    expect(call.path).toBe('sessions');
    expect(call.headers.authorization).toBe('token secret-token');
    // no bare cache-buster argument: the API answers unknown query arguments with 422
    expect(call.query).toBe('');
  });

  it('turns a 422 into an ApiError with field errors', async () => {
    const server = new FakeServer();
    server.on(c =>
      c.method === 'POST' && c.path === 'sessions'
        ? { status: 422, body: { error: 'invalid value for: temperature', detail: [{ field: 'temperature', message: 'at most 1', type: 'x' }] } }
        : undefined
    );
    const err: ApiError = await server.api.create({ temperature: 1.5 }).catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(422);
    expect(err.fields).toEqual([{ field: 'temperature', message: 'at most 1' }]);
    expect(server.calls[0].body).toEqual({ temperature: 1.5 });
  });

  it('says null for workflows and Drive when the server has no such routes', async () => {
    const server = new FakeServer();
    server.workflows = null;
    expect(await server.api.workflows()).toBeNull();
    expect(await server.api.drive()).toBeNull();
  });

  it('posts each operation to its route', async () => {
    const server = new FakeServer();
    server.sessions.set('a b', session('a b'));
    const api = server.api;
    await api.send('a b', 'hello');
    await api.answer('a b', 'q1', ['Go', ['Tests'], 'Ada']);
    await api.feedback('a b', 'm1', 'down', 'too long');
    await api.rename('a b', 'New name');
    await api.addRepo('a b', { url: 'https://h/r.git', branch: 'main' });
    await api.attachWorkflow('a b', 'bugfix');
    await api.clone('a b');
    await api.stop('a b');
    await api.resume('a b');
    await api.remove('a b');
    expect(server.calls.map(c => `${c.method} ${c.path}`)).toEqual([
      'POST sessions/a%20b/messages',
      'POST sessions/a%20b/answers',
      'POST sessions/a%20b/feedback',
      'PATCH sessions/a%20b',
      'POST sessions/a%20b/repos',
      'POST sessions/a%20b/workflow',
      'POST sessions/a%20b/clone',
      'POST sessions/a%20b/stop',
      'POST sessions/a%20b/resume',
      'DELETE sessions/a%20b'
    ]);
    expect(server.calls[1].body).toEqual({ tool_call_id: 'q1', answers: ['Go', ['Tests'], 'Ada'] });
    expect(server.calls[2].body).toEqual({ message_id: 'm1', rating: 'down', comment: 'too long' });
  });

  it('downloads an export with the server-given filename', async () => {
    const server = new FakeServer();
    server.sessions.set('a', session('a'));
    const f = await server.api.exportFile('a', 'markdown');
    expect(f.filename).toBe('My session.md');
    expect(await f.blob.text()).toBe('# transcript\n');
    expect(server.calls[0].query).toBe('?format=markdown');
    expect(filenameOf('attachment; filename="x.pdf"', 'y')).toBe('x.pdf');
    expect(filenameOf(null, 'y')).toBe('y');
  });

  it('builds the stream URL with after=<seq> and the token', () => {
    const url = new FakeServer().api.streamUrl('s 1', 41);
    expect(url).toBe('ws://localhost:8888/user/ada/jupyter-sessions/api/sessions/s%201/stream?after=41&token=secret-token');
  });
});
