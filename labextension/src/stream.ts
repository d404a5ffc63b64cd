/**
 * One session's live event feed: websocket `/sessions/{id}/stream?after=<last seq>`, folded by the
 * shared chat module's `Feed` (which drops anything at or below the last applied seq), so a
 * reconnect after a network drop, a page reload or a second tab neither loses nor repeats events.
 */
import { Feed, type ChatState, type SessionEvent } from '@jupyter-sessions/chat';
import { ISignal, Signal } from '@lumino/signaling';
import type { SessionsApi } from './api';
import { closeQuietly } from './socket';

export type StreamStatus = 'connecting' | 'live' | 'reconnecting' | 'closed' | 'error';

export interface StreamOptions {
  /** websocket constructor (tests inject a fake); defaults to the server settings' one */
  WebSocket?: typeof WebSocket;
  /** ms between reconnect attempts: min(maxDelay, base * 2^n) */
  baseDelay?: number;
  maxDelay?: number;
  /** ms to batch renders of a burst of events */
  batchMs?: number;
  /** window to listen on for `online` (tests pass null) */
  window?: Window | null;
}

export class SessionStream {
  readonly feed = new Feed();
  readonly id: string;
  private _api: SessionsApi;
  private _ws: WebSocket | null = null;
  private _status: StreamStatus = 'connecting';
  private _detail = '';
  private _attempt = 0;
  private _timer: any = null;
  private _batch: any = null;
  private _disposed = false;
  private _opts: Required<Omit<StreamOptions, 'WebSocket' | 'window'>> & StreamOptions;
  private _changed = new Signal<this, ChatState>(this);
  private _statusChanged = new Signal<this, StreamStatus>(this);
  private _events = new Signal<this, SessionEvent>(this);
  private _onOnline = () => this.reconnectNow();
  private _win: Window | null;
  /** how many times a socket was opened (for tests and the status tooltip) */
  connections = 0;

  constructor(api: SessionsApi, id: string, options: StreamOptions = {}) {
    this._api = api;
    this.id = id;
    this._opts = { baseDelay: 500, maxDelay: 10_000, batchMs: 30, ...options };
    const win = options.window === undefined ? (typeof window !== 'undefined' ? window : null) : options.window;
    win?.addEventListener('online', this._onOnline);
    this._win = win;
  }

  /** the folded state changed (batched) */
  get changed(): ISignal<this, ChatState> {
    return this._changed;
  }

  get statusChanged(): ISignal<this, StreamStatus> {
    return this._statusChanged;
  }

  /** every new event, once, in seq order (after dedup) */
  get events(): ISignal<this, SessionEvent> {
    return this._events;
  }

  get status(): StreamStatus {
    return this._status;
  }

  /** the status line the chat header shows */
  get statusText(): string {
    if (this._status === 'reconnecting') {
      return `reconnecting: ${this._detail || 'connection lost'}`;
    }
    if (this._status === 'error') {
      return `error: ${this._detail}`;
    }
    return this._status;
  }

  get state(): ChatState {
    return this.feed.state;
  }

  get lastSeq(): number {
    return this.feed.applied;
  }

  get socket(): WebSocket | null {
    return this._ws;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  start(): void {
    if (!this._ws && !this._disposed) {
      this._connect();
    }
  }

  /** Drop the socket and connect again at once (after `online`, or from a test). */
  reconnectNow(): void {
    if (this._disposed || this._status === 'closed') {
      return;
    }
    clearTimeout(this._timer);
    this._timer = null;
    closeQuietly(this._ws);
    this._ws = null;
    this._connect();
  }

  /** Apply events (from the socket, or a REST replay); duplicates and old seqs are dropped. */
  push(events: SessionEvent[]): void {
    let fresh = false;
    for (const ev of events) {
      if (!ev || typeof ev.seq !== 'number' || ev.seq <= this.feed.applied) {
        continue;
      }
      this.feed.push([ev]);
      fresh = true;
      this._events.emit(ev);
      if (ev.type === 'SESSION_DELETED') {
        this._setStatus('closed');
      }
    }
    if (fresh) {
      this._scheduleRender();
    }
  }

  private _scheduleRender(): void {
    if (this._batch !== null) {
      return;
    }
    this._batch = setTimeout(() => {
      this._batch = null;
      if (!this._disposed) {
        this._changed.emit(this.feed.state);
      }
    }, this._opts.batchMs);
  }

  private _setStatus(s: StreamStatus, detail = ''): void {
    const changed = s !== this._status || detail !== this._detail;
    this._status = s;
    this._detail = detail;
    if (changed && !this._disposed) {
      this._statusChanged.emit(s);
    }
  }

  private _connect(): void {
    const Ctor = this._opts.WebSocket ?? this._api.serverSettings.WebSocket;
    let ws: WebSocket;
    try {
      ws = new Ctor(this._api.streamUrl(this.id, this.feed.applied));
    } catch (e: any) {
      this._retry(`cannot open the stream: ${e?.message ?? e}`);
      return;
    }
    this._ws = ws;
    this.connections++;
    if (this._status !== 'reconnecting') {
      this._setStatus('connecting');
    }
    ws.onopen = () => {
      this._attempt = 0;
      this._setStatus('live');
    };
    ws.onmessage = (msg: MessageEvent) => {
      let ev: SessionEvent;
      try {
        ev = JSON.parse(typeof msg.data === 'string' ? msg.data : String(msg.data));
      } catch {
        return;
      }
      this.push([ev]);
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
    ws.onclose = (e: CloseEvent) => {
      if (this._ws !== ws) {
        return;
      }
      this._ws = null;
      if (this._disposed) {
        return;
      }
      if (e.code === 1000 && /deleted/i.test(e.reason || '')) {
        this._setStatus('closed');
        return;
      }
      void this._afterDrop(e);
    };
  }

  private async _afterDrop(e: CloseEvent): Promise<void> {
    // A socket that never opened may mean the session is gone (404 on the handshake): ask.
    if (this._attempt >= 2) {
      try {
        await this._api.get(this.id);
      } catch (err: any) {
        if (err?.status === 404) {
          this._setStatus('closed');
          return;
        }
      }
    }
    this._retry(e.reason || `connection lost (code ${e.code})`);
  }

  private _retry(why: string): void {
    if (this._disposed) {
      return;
    }
    const delay = Math.min(this._opts.maxDelay, this._opts.baseDelay * 2 ** this._attempt);
    this._attempt++;
    this._setStatus('reconnecting', why);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._disposed && !this._ws) {
        this._connect();
      }
    }, delay);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    clearTimeout(this._timer);
    clearTimeout(this._batch);
    this._win?.removeEventListener('online', this._onOnline);
    closeQuietly(this._ws);
    this._ws = null;
    Signal.clearData(this);
  }
}
