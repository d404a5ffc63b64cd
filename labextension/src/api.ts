/**
 * The jupyter-sessions REST API, through JupyterLab's ServerConnection (auth token, XSRF and the
 * server's base URL are handled there, so this works under JupyterHub's /user/<name>/ too).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API_PREFIX = 'jupyter-sessions/api';

export type Phase =
  | 'Pending'
  | 'Creating'
  | 'Running'
  | 'Stopping'
  | 'Stopped'
  | 'Completed'
  | 'Failed';

export type AgentState = 'working' | 'idle' | 'waiting_input';

export interface RepoSpec {
  url: string;
  branch?: string | null;
  name?: string | null;
}

export interface ThinkingSpec {
  enabled?: boolean;
  budget_tokens: number;
}

/** The settings a session is created with (SessionSpec in models.py). All optional. */
export interface SessionSpec {
  display_name?: string | null;
  model?: string;
  temperature?: number;
  max_tokens?: number;
  timeout?: number;
  inactivity_timeout?: number | null;
  thinking?: ThinkingSpec | null;
  repos?: RepoSpec[];
  workflow?: string | null;
  initial_prompt?: string | null;
  complete_when_done?: boolean;
  workspace?: string;
}

export interface Session {
  id: string;
  display_name: string;
  phase: Phase;
  agent_state: AgentState | null;
  spec: Required<Pick<SessionSpec, 'model' | 'temperature' | 'max_tokens' | 'timeout'>> &
    SessionSpec;
  owner: string;
  sandbox: string;
  isolated: boolean;
  created: string;
  started: string | null;
  stopped: string | null;
  reason: string | null;
  last_seq: number;
}

export interface ModelInfo {
  id: string;
  label: string;
  provider: 'anthropic' | 'gemini' | 'replay';
  default: boolean;
  gated: boolean;
  max_temperature: number;
  max_output_tokens: number;
  thinking_default: boolean;
}

export interface ModelList {
  models: ModelInfo[];
  default_model: string;
}

export interface WorkspaceInfo {
  name: string;
  primary: boolean;
  features: string[];
  default_model: string | null;
  inactivity_timeout: number;
}

export interface WorkspaceList {
  primary: string;
  workspaces: WorkspaceInfo[];
}

export interface WorkflowInfo {
  id: string;
  name: string;
  description: string;
  source: string;
  kind: 'builtin' | 'folder' | 'git';
  startup_prompt: boolean;
  artifacts_dir: string | null;
  commands: string[];
  enabled: boolean;
}

export interface DriveStatus {
  configured: boolean;
  connected: boolean;
  missing: string[];
  connect_url: string | null;
}

export interface FieldError {
  field: string;
  message: string;
}

/** An error answer of the API: `{"error", "detail"}`; 422s name each field in `detail`. */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: any;

  constructor(status: number, message: string, detail: any = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
  }

  /** Field errors of a 422 (`[{field, message}]`), else []. */
  get fields(): FieldError[] {
    if (!Array.isArray(this.detail)) {
      return [];
    }
    return this.detail
      .filter((d: any) => d && typeof d.field === 'string')
      .map((d: any) => ({ field: d.field, message: String(d.message ?? '') }));
  }
}

/** A file the server sent back (export). */
export interface Download {
  blob: Blob;
  filename: string;
  type: string;
}

function filenameOf(disposition: string | null, fallback: string): string {
  if (!disposition) {
    return fallback;
  }
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      /* fall through */
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1].trim() : fallback;
}

export async function errorFrom(
  resp: Response,
  method: string,
  path: string
): Promise<ApiError> {
  let body: any = null;
  try {
    body = await resp.json();
  } catch {
    /* not JSON */
  }
  if (body && typeof body.error === 'string') {
    return new ApiError(resp.status, body.error, body.detail ?? null);
  }
  if (resp.status === 404) {
    return new ApiError(
      404,
      `this server has no ${method} ${path.replace(/\?.*/, '')}: update jupyter-sessions on the server`
    );
  }
  return new ApiError(resp.status, `HTTP ${resp.status} from ${method} ${path}`);
}

/** Thin typed client of the sessions API. */
export class SessionsApi {
  readonly serverSettings: ServerConnection.ISettings;

  constructor(serverSettings?: ServerConnection.ISettings) {
    this.serverSettings = serverSettings ?? ServerConnection.makeSettings();
  }

  url(path: string): string {
    return URLExt.join(this.serverSettings.baseUrl, API_PREFIX, path);
  }

  /** websocket URL of a session's stream, replaying after `after`. */
  streamUrl(id: string, after: number): string {
    const s = this.serverSettings;
    let url =
      URLExt.join(s.wsUrl, API_PREFIX, 'sessions', encodeURIComponent(id), 'stream') +
      `?after=${Math.max(0, Math.floor(after))}`;
    if (s.token && s.appendToken) {
      url += `&token=${encodeURIComponent(s.token)}`;
    }
    return url;
  }

  /** websocket URL of the session-list watch (a snapshot, then each change). */
  watchUrl(): string {
    const s = this.serverSettings;
    let url = URLExt.join(s.wsUrl, API_PREFIX, 'sessions', 'watch');
    if (s.token && s.appendToken) {
      url += `?token=${encodeURIComponent(s.token)}`;
    }
    return url;
  }

  async raw(method: string, path: string, body?: unknown): Promise<Response> {
    // Not 'no-store': for that, ServerConnection appends a bare `?<timestamp>` cache buster,
    // and this API answers unknown query arguments with a 422. 'no-cache' still revalidates.
    const init: RequestInit = { method, cache: 'no-cache' };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let resp: Response;
    try {
      resp = await ServerConnection.makeRequest(this.url(path), init, this.serverSettings);
    } catch (e: any) {
      throw new ApiError(0, `cannot reach the server: ${e?.message ?? e}`);
    }
    if (!resp.ok) {
      throw await errorFrom(resp, method, path);
    }
    return resp;
  }

  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const resp = await this.raw(method, path, body);
    if (resp.status === 204) {
      return null as T;
    }
    const text = await resp.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  private sid(id: string): string {
    return 'sessions/' + encodeURIComponent(id);
  }

  models(workspace?: string): Promise<ModelList> {
    const q = workspace ? `?workspace=${encodeURIComponent(workspace)}` : '';
    return this.call('GET', 'models' + q);
  }

  workspaces(): Promise<WorkspaceList> {
    return this.call('GET', 'workspaces');
  }

  /** Workflows the server offers; null when this server has no /workflows (free text then). */
  async workflows(): Promise<WorkflowInfo[] | null> {
    try {
      const r = await this.call<{ workflows: WorkflowInfo[] }>('GET', 'workflows');
      return r.workflows;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
        return null;
      }
      throw e;
    }
  }

  async list(): Promise<Session[]> {
    return (await this.call<{ sessions: Session[] }>('GET', 'sessions')).sessions;
  }

  get(id: string): Promise<Session> {
    return this.call('GET', this.sid(id));
  }

  create(spec: SessionSpec): Promise<Session> {
    return this.call('POST', 'sessions', spec);
  }

  rename(id: string, displayName: string): Promise<Session> {
    return this.call('PATCH', this.sid(id), { display_name: displayName });
  }

  remove(id: string): Promise<null> {
    return this.call('DELETE', this.sid(id));
  }

  stop(id: string): Promise<Session> {
    return this.call('POST', this.sid(id) + '/stop', {});
  }

  resume(id: string): Promise<Session> {
    return this.call('POST', this.sid(id) + '/resume', {});
  }

  clone(id: string): Promise<Session> {
    return this.call('POST', this.sid(id) + '/clone', {});
  }

  addRepo(id: string, repo: RepoSpec): Promise<Session> {
    return this.call('POST', this.sid(id) + '/repos', repo);
  }

  attachWorkflow(id: string, workflow: string): Promise<Session> {
    return this.call('POST', this.sid(id) + '/workflow', { workflow });
  }

  send(id: string, text: string): Promise<{ message_id: string; status: string }> {
    return this.call('POST', this.sid(id) + '/messages', { text });
  }

  answer(id: string, toolCallId: string, answers: (string | string[] | null)[]): Promise<Session> {
    return this.call('POST', this.sid(id) + '/answers', { tool_call_id: toolCallId, answers });
  }

  feedback(id: string, messageId: string, rating: 'up' | 'down', comment?: string): Promise<any> {
    const body: any = { message_id: messageId, rating };
    if (comment) {
      body.comment = comment;
    }
    return this.call('POST', this.sid(id) + '/feedback', body);
  }

  async events(id: string, after = 0, limit = 1000): Promise<{ events: any[]; last_seq: number }> {
    return this.call('GET', `${this.sid(id)}/events?after=${after}&limit=${limit}`);
  }

  /** Download an export: format markdown | pdf | ipynb | json. */
  async exportFile(id: string, format: string): Promise<Download> {
    const resp = await this.raw('GET', `${this.sid(id)}/export?format=${encodeURIComponent(format)}`);
    const blob = await resp.blob();
    const ext = { markdown: 'md', pdf: 'pdf', ipynb: 'ipynb', json: 'json' }[format] ?? format;
    return {
      blob,
      filename: filenameOf(resp.headers.get('Content-Disposition'), `session-${id}.${ext}`),
      type: resp.headers.get('Content-Type') ?? blob.type
    };
  }

  /** Google Drive status; null when this server has no Drive support. */
  async drive(): Promise<DriveStatus | null> {
    try {
      return await this.call<DriveStatus>('GET', 'drive');
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
        return null;
      }
      throw e;
    }
  }

  exportToDrive(id: string, format: string): Promise<{ file_id: string; name: string; link: string | null }> {
    return this.call('POST', this.sid(id) + '/export/drive', { format });
  }
}

export { filenameOf };
