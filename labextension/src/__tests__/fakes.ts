/**
 * Test doubles: an in-memory jupyter-sessions API behind a fetch function (so requests go
 * through the real ServerConnection), and a scriptable WebSocket.
 */
import { ServerConnection } from '@jupyterlab/services';
import type { ModelInfo, Session } from '../api';
import { SessionsApi } from '../api';

export const MODELS: ModelInfo[] = [
  {
    id: 'claude-sonnet-4-5',
    label: 'Claude Sonnet 4.5',
    provider: 'anthropic',
    default: true,
    gated: false,
    max_temperature: 1,
    max_output_tokens: 64000,
    thinking_default: false
  },
  {
    id: 'gemini-2.5-flash',
    label: 'Gemini 2.5 Flash',
    provider: 'gemini',
    default: false,
    gated: false,
    max_temperature: 2,
    max_output_tokens: 65536,
    thinking_default: true
  },
  {
    id: 'replay',
    label: 'Replay (recorded, offline)',
    provider: 'replay',
    default: false,
    gated: false,
    max_temperature: 2,
    max_output_tokens: 1000000,
    thinking_default: false
  }
];

export function session(id: string, over: Partial<Session> = {}): Session {
  return {
    id,
    display_name: `Session ${id}`,
    phase: 'Running',
    agent_state: 'idle',
    spec: { model: 'claude-sonnet-4-5', temperature: 0.7, max_tokens: 4000, timeout: 300, repos: [], workflow: null, inactivity_timeout: null },
    owner: 'me',
    sandbox: 'local',
    isolated: false,
    created: new Date(Date.now() - 5 * 60_000).toISOString(),
    started: null,
    stopped: null,
    reason: null,
    last_seq: 0,
    ...over
  } as Session;
}

export interface Call {
  method: string;
  path: string;
  query: string;
  body: any;
  headers: Record<string, string>;
}

type Handler = (call: Call) => { status: number; body?: any; headers?: Record<string, string> } | undefined;

/** A fake API: route handlers keyed by "METHOD path"; every call is recorded. */
export class FakeServer {
  calls: Call[] = [];
  sessions = new Map<string, Session>();
  workflows: any = {
    workflows: [
      { id: 'bugfix', name: 'Bug fix', description: 'Reproduce, fix, test', source: 'bugfix', kind: 'builtin', startup_prompt: false, artifacts_dir: null, commands: ['fix'], enabled: true }
    ]
  };
  routes: Handler[] = [];
  baseUrl = 'http://localhost:8888/user/ada/';

  constructor() {
    this.routes.push(call => this._default(call));
  }

  /** add a handler that wins over the defaults (return undefined to fall through) */
  on(handler: Handler): void {
    this.routes.unshift(handler);
  }

  get api(): SessionsApi {
    const settings = ServerConnection.makeSettings({
      baseUrl: this.baseUrl,
      wsUrl: 'ws://localhost:8888/user/ada/',
      token: 'secret-token',
      appendToken: true,
      fetch: (req: any) => this.fetch(req),
      Request: Request as any,
      Headers: Headers as any
    });
    return new SessionsApi(settings);
  }

  async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const prefix = new URL(this.baseUrl).pathname + 'jupyter-sessions/api/';
    if (!url.pathname.startsWith(prefix)) {
      return new Response(JSON.stringify({ error: 'not found' }), { status: 404 });
    }
    const text = await req.text();
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => (headers[k] = v));
    const call: Call = {
      method: req.method,
      path: url.pathname.slice(prefix.length),
      query: url.search,
      body: text ? JSON.parse(text) : undefined,
      headers
    };
    this.calls.push(call);
    for (const r of this.routes) {
      const res = r(call);
      if (res) {
        const body = res.body === undefined ? null : typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
        return new Response(res.status === 204 ? null : body, {
          status: res.status,
          headers: { 'Content-Type': 'application/json', ...(res.headers ?? {}) }
        });
      }
    }
    return new Response(JSON.stringify({ error: 'no route' }), { status: 404 });
  }

  private _default(call: Call): ReturnType<Handler> {
    const m = /^sessions\/([^/]+)(?:\/(.*))?$/.exec(call.path);
    const key = `${call.method} ${call.path}`;
    if (key === 'GET models') {
      return { status: 200, body: { models: MODELS, default_model: 'claude-sonnet-4-5' } };
    }
    if (key === 'GET workspaces') {
      return { status: 200, body: { primary: 'default', workspaces: [{ name: 'default', primary: true, features: [], default_model: null, inactivity_timeout: 86400 }] } };
    }
    if (key === 'GET workflows') {
      return this.workflows === null ? { status: 404, body: { error: 'no such page' } } : { status: 200, body: this.workflows };
    }
    if (key === 'GET sessions') {
      return { status: 200, body: { sessions: [...this.sessions.values()] } };
    }
    if (key === 'POST sessions') {
      const id = `s-${this.sessions.size + 1}`;
      const s = session(id, { phase: 'Pending', agent_state: null, display_name: call.body.display_name ?? `Session ${id}`, spec: { ...session(id).spec, ...call.body } });
      this.sessions.set(id, s);
      return { status: 201, body: s };
    }
    if (m) {
      const s = this.sessions.get(decodeURIComponent(m[1]));
      if (!s) {
        return { status: 404, body: { error: `no session ${m[1]}` } };
      }
      const op = m[2] ?? '';
      if (call.method === 'GET' && !op) {
        return { status: 200, body: s };
      }
      if (call.method === 'PATCH' && !op) {
        s.display_name = call.body.display_name;
        s.last_seq++; // like the server: the change is an event, and the answer carries its seq
        return { status: 200, body: s };
      }
      if (call.method === 'DELETE' && !op) {
        this.sessions.delete(s.id);
        return { status: 204 };
      }
      if (op === 'stop') {
        s.phase = 'Stopping';
        s.last_seq++;
        return { status: 202, body: s };
      }
      if (op === 'resume') {
        s.phase = 'Creating';
        s.last_seq++;
        return { status: 202, body: s };
      }
      if (op === 'clone') {
        const id = `${s.id}-copy`;
        const c = { ...s, id, display_name: `${s.display_name} (copy)`, phase: 'Pending' as const };
        this.sessions.set(id, c);
        return { status: 201, body: c };
      }
      if (op === 'messages') {
        return { status: 202, body: { message_id: 'm1', status: 'queued' } };
      }
      if (op === 'answers' || op === 'workflow') {
        return { status: 202, body: s };
      }
      if (op === 'repos') {
        s.spec.repos = [...(s.spec.repos ?? []), call.body];
        return { status: 202, body: s };
      }
      if (op === 'feedback') {
        return { status: 201, body: { session_id: s.id, message_id: call.body.message_id, rating: call.body.rating } };
      }
      if (op === 'export') {
        return {
          status: 200,
          body: '# transcript\n',
          headers: { 'Content-Type': 'text/markdown; charset=utf-8', 'Content-Disposition': "attachment; filename*=UTF-8''My%20session.md" }
        };
      }
    }
    return undefined;
  }
}

/** A WebSocket the test drives: open(), emit(event), drop(). */
export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  static reset(): void {
    FakeWebSocket.instances = [];
  }
  static get last(): FakeWebSocket {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  url: string;
  readyState = 0;
  closed = false;
  onopen: ((e: any) => void) | null = null;
  onmessage: ((e: any) => void) | null = null;
  onclose: ((e: any) => void) | null = null;
  onerror: ((e: any) => void) | null = null;

  constructor(url: string) {
    this.url = url;
    FakeWebSocket.instances.push(this);
  }

  get after(): number {
    return Number(new URL(this.url).searchParams.get('after'));
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  emit(...events: any[]): void {
    for (const ev of events) {
      this.onmessage?.({ data: JSON.stringify(ev) });
    }
  }

  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  close(): void {
    this.readyState = 3;
    this.closed = true;
  }

  send(): void {
    /* the stream is one-way */
  }
}

/** A small recorded transcript: text, thinking, a tool call, a three-question form. */
export function transcript(): any[] {
  let seq = 0;
  const ev = (type: string, data: any = {}) => ({ seq: ++seq, type, ts: '2026-01-01T00:00:00Z', data });
  return [
    ev('PHASE_CHANGED', { phase: 'Pending', reason: 'session created' }),
    ev('PHASE_CHANGED', { phase: 'Creating', reason: 'provisioning' }),
    ev('PHASE_CHANGED', { phase: 'Running', reason: 'sandbox ready' }),
    ev('USER_MESSAGE', { message_id: 'u1', text: 'Look around' }),
    ev('AGENT_STATE_CHANGED', { state: 'working' }),
    ev('MESSAGE_DELIVERED', { message_id: 'u1' }),
    ev('RUN_STARTED', {}),
    ev('REASONING_MESSAGE_START', { messageId: 'r1' }),
    ev('REASONING_MESSAGE_CONTENT', { messageId: 'r1', delta: 'A listing ' }),
    ev('REASONING_MESSAGE_CONTENT', { messageId: 'r1', delta: 'will do.' }),
    ev('REASONING_MESSAGE_END', { messageId: 'r1' }),
    ev('TEXT_MESSAGE_START', { messageId: 'a1' }),
    ev('TEXT_MESSAGE_CONTENT', { messageId: 'a1', delta: 'Here is **bold** ' }),
    ev('TEXT_MESSAGE_CONTENT', { messageId: 'a1', delta: 'text.' }),
    ev('TEXT_MESSAGE_END', { messageId: 'a1' }),
    ev('TOOL_CALL_START', { toolCallId: 't1', toolCallName: 'bash' }),
    ev('TOOL_CALL_ARGS', { toolCallId: 't1', delta: '{"command": "ls' }),
    ev('TOOL_CALL_ARGS', { toolCallId: 't1', delta: ' -la"}' }),
    ev('TOOL_CALL_RESULT', { toolCallId: 't1', content: 'README.md\n', isError: false }),
    ev('QUESTION_ASKED', {
      toolCallId: 'q1',
      questions: [
        { question: 'Which language?', header: 'Language', multiSelect: false, options: [{ label: 'Python' }, { label: 'Go' }] },
        { question: 'Extras?', header: 'Features', multiSelect: true, options: [{ label: 'Tests' }, { label: 'CI' }] },
        { question: 'Name?', header: 'Name', multiSelect: false, options: [] }
      ]
    }),
    ev('AGENT_STATE_CHANGED', { state: 'waiting_input' })
  ];
}

export function flush(ms = 0): Promise<void> {
  return new Promise(r => setTimeout(r, ms));
}
