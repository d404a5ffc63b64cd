/**
 * The sessions this user has, shared by the side panel's list and every open session view.
 * Kept live by the server's session watch (a websocket: a snapshot, then each change); polling
 * GET /sessions only fills in while that socket is down. Also patched at once from the event
 * streams of open views and from the answers of our own requests.
 */
import { ISignal, Signal } from '@lumino/signaling';
import type { AgentState, Phase, Session, SessionsApi } from './api';
import { closeQuietly } from './socket';

export const RESTING: ReadonlySet<string> = new Set(['Stopped', 'Completed', 'Failed']);
export const ACTIVE: ReadonlySet<string> = new Set(['Pending', 'Creating', 'Running']);

/** What each operation is allowed in (README's operation × phase table). */
export const ALLOWED: Record<string, ReadonlySet<string>> = {
  message: ACTIVE,
  answer: new Set(['Running']),
  add_repo: ACTIVE,
  stop: ACTIVE,
  resume: RESTING,
  clone: new Set(['Pending', 'Creating', 'Running', 'Stopping', 'Stopped', 'Completed', 'Failed']),
  rename: new Set(['Pending', 'Creating', 'Running', 'Stopping', 'Stopped', 'Completed', 'Failed']),
  delete: new Set(['Pending', 'Creating', 'Running', 'Stopping', 'Stopped', 'Completed', 'Failed']),
  export: new Set(['Pending', 'Creating', 'Running', 'Stopping', 'Stopped', 'Completed', 'Failed'])
};

export function allowed(operation: keyof typeof ALLOWED | string, phase: string): boolean {
  return !!ALLOWED[operation]?.has(phase);
}

/** One message of GET /sessions/watch. */
interface SessionChange {
  type: 'snapshot' | 'changed' | 'deleted';
  sessions?: Session[];
  session?: Session;
  id?: string;
}

export interface WatchOptions {
  /** the WebSocket class (tests pass a fake) */
  WebSocket?: typeof WebSocket;
  /** reconnect backoff: first delay and cap (ms) */
  baseDelay?: number;
  maxDelay?: number;
}

export class SessionsModel {
  readonly api: SessionsApi;
  private _sessions = new Map<string, Session>();
  private _changed = new Signal<this, void>(this);
  private _error = '';
  private _loaded = false;
  private _timer: any = null;
  private _interval = 0;
  private _inflight: Promise<void> | null = null;
  private _disposed = false;
  private _ws: WebSocket | null = null;
  private _live = false;
  private _watchOpts: WatchOptions | null = null;
  private _attempt = 0;
  private _reconnect: any = null;

  constructor(api: SessionsApi) {
    this.api = api;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** the last refresh error ('' when fine) */
  get error(): string {
    return this._error;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  /** true while the session watch is connected (then nothing polls) */
  get live(): boolean {
    return this._live;
  }

  /** newest first */
  get sessions(): Session[] {
    return [...this._sessions.values()].sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
  }

  get(id: string): Session | undefined {
    return this._sessions.get(id);
  }

  refresh(): Promise<void> {
    if (this._inflight) {
      return this._inflight;
    }
    this._inflight = (async () => {
      try {
        this._replace(await this.api.list());
      } catch (e: any) {
        const msg = e?.message ?? String(e);
        if (msg !== this._error) {
          this._error = msg;
          this._changed.emit();
        }
      } finally {
        this._inflight = null;
      }
    })();
    return this._inflight;
  }

  /** Poll every `ms` (0 stops) whenever the session watch is not connected. */
  poll(ms: number): void {
    if (ms === this._interval || this._disposed) {
      return;
    }
    this._interval = ms;
    this._schedulePolling();
  }

  private _schedulePolling(): void {
    clearInterval(this._timer);
    this._timer = null;
    if (this._interval > 0 && !this._live && !this._disposed) {
      this._timer = setInterval(() => {
        if (typeof document === 'undefined' || !document.hidden) {
          void this.refresh();
        }
      }, this._interval);
    }
  }

  /** Follow the server's session watch; reconnects with backoff, polling meanwhile. */
  watch(opts: WatchOptions = {}): void {
    if (this._watchOpts || this._disposed) {
      return;
    }
    this._watchOpts = opts;
    this._connect();
  }

  private _connect(): void {
    const opts = this._watchOpts!;
    const Ctor = opts.WebSocket ?? this.api.serverSettings.WebSocket;
    let ws: WebSocket;
    try {
      ws = new Ctor(this.api.watchUrl());
    } catch {
      this._retry();
      return;
    }
    this._ws = ws;
    ws.onmessage = (msg: MessageEvent) => {
      let change: SessionChange;
      try {
        change = JSON.parse(typeof msg.data === 'string' ? msg.data : String(msg.data));
      } catch {
        return;
      }
      this._apply(change);
    };
    ws.onerror = () => {
      /* onclose follows */
    };
    ws.onclose = () => {
      if (this._ws !== ws) {
        return;
      }
      this._ws = null;
      if (this._live) {
        this._live = false;
        this._schedulePolling(); // a server without the watch, or a dropped one: poll meanwhile
      }
      this._retry();
    };
  }

  private _retry(): void {
    if (this._disposed) {
      return;
    }
    const opts = this._watchOpts!;
    const delay = Math.min(opts.maxDelay ?? 30_000, (opts.baseDelay ?? 1000) * 2 ** this._attempt);
    this._attempt++;
    clearTimeout(this._reconnect);
    this._reconnect = setTimeout(() => {
      this._reconnect = null;
      if (!this._disposed && !this._ws) {
        this._connect();
      }
    }, delay);
  }

  private _apply(change: SessionChange): void {
    if (change.type === 'snapshot' && change.sessions) {
      // the socket works: the snapshot is the list, and polling rests until the socket drops
      this._attempt = 0;
      this._live = true;
      this._schedulePolling();
      this._replace(change.sessions);
    } else if (change.type === 'changed' && change.session) {
      const old = this._sessions.get(change.session.id);
      if (!old || JSON.stringify(old) !== JSON.stringify(change.session)) {
        this.upsert(change.session);
      }
    } else if (change.type === 'deleted' && change.id) {
      this.remove(change.id);
    }
  }

  /** What we hold for `s.id` when it is newer than `s` (by last_seq), else undefined. */
  private _newer(s: Session): Session | undefined {
    const old = this._sessions.get(s.id);
    return old && old.last_seq > s.last_seq ? old : undefined;
  }

  /** Take `list` as the whole truth (but never step a session back); emit only when something differs. */
  private _replace(list: Session[]): void {
    const next = new Map(list.map(s => [s.id, this._newer(s) ?? s]));
    const same =
      this._loaded &&
      !this._error &&
      next.size === this._sessions.size &&
      list.every(s => {
        const old = this._sessions.get(s.id);
        return old && JSON.stringify(old) === JSON.stringify(next.get(s.id));
      });
    this._sessions = next;
    this._error = '';
    this._loaded = true;
    if (!same) {
      this._changed.emit();
    }
  }

  /**
   * Take a session as the server sent it, unless what we have is newer by `last_seq`: a request's
   * answer (stop, resume) can arrive after the stream or the watch applied later events, and with
   * the list live there is no next poll to set it right.
   */
  upsert(s: Session): void {
    if (this._newer(s)) {
      return;
    }
    this._sessions.set(s.id, s);
    this._loaded = true;
    this._changed.emit();
  }

  /** Change a known session in place (from a stream event); unknown ids are ignored. */
  patch(id: string, change: Partial<Session>): void {
    const s = this._sessions.get(id);
    if (!s) {
      return;
    }
    const keys = Object.keys(change) as (keyof Session)[];
    if (keys.every(k => s[k] === change[k])) {
      return;
    }
    this._sessions.set(id, { ...s, ...change });
    this._changed.emit();
  }

  /** Apply what a session's event says about its row. */
  applyEvent(id: string, ev: { type: string; seq: number; data?: Record<string, any> }): void {
    const d = ev.data || {};
    const s = this._sessions.get(id);
    if (!s || ev.seq <= s.last_seq) {
      return;
    }
    if (ev.type === 'PHASE_CHANGED') {
      this.patch(id, {
        phase: d.phase as Phase,
        reason: d.reason ?? s.reason,
        agent_state: d.phase === 'Running' ? s.agent_state : null,
        last_seq: ev.seq
      });
    } else if (ev.type === 'AGENT_STATE_CHANGED') {
      this.patch(id, { agent_state: d.state as AgentState, last_seq: ev.seq });
    } else if (ev.type === 'SESSION_RENAMED') {
      this.patch(id, { display_name: d.display_name, last_seq: ev.seq });
    } else if (ev.type === 'SESSION_DELETED') {
      this.remove(id);
    }
  }

  remove(id: string): void {
    if (this._sessions.delete(id)) {
      this._changed.emit();
    }
  }

  dispose(): void {
    this._disposed = true;
    clearInterval(this._timer);
    clearTimeout(this._reconnect);
    closeQuietly(this._ws);
    this._ws = null;
    Signal.clearData(this);
  }
}
