/**
 * A session in a main-area tab: the shared chat (jupyter_sessions/static/chat.js: messages, tool
 * and thinking blocks, queued messages, the tabbed question form, thumbs, Stop/Resume), a toolbar
 * with Rename, Clone, Export and Delete, and a side column with the details, the repositories
 * (add one while Running) and the workflow.
 */
import {
  createUiState,
  mount,
  type ChatController,
  type ChatState,
  type SessionEvent,
  type UiState
} from '@jupyter-sessions/chat';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { ApiError, Session, SessionsApi, WorkflowInfo } from './api';
import { age, duration, h, saveBlob } from './dom';
import { confirmModal, feedbackModal, Modal } from './modal';
import { SessionsModel, allowed } from './model';
import { SessionStream, StreamOptions } from './stream';
import { checkRepo, FieldErrors } from './validate';

export interface ViewOptions {
  model: SessionsModel;
  id: string;
  /** open another session (after Clone) */
  open?: (id: string) => void;
  stream?: StreamOptions;
  /** Drive status lookups (null: no Drive on this server) */
  drive?: boolean;
}

interface RepoStatus {
  url: string;
  branch?: string | null;
  state: 'cloning' | 'cloned' | 'failed' | 'pending';
  detail: string;
}

/** What the side column shows, folded from the session row and the events. */
export interface SideInfo {
  repos: RepoStatus[];
  workflow: { name: string; source: string; description: string; commands: string[]; error: string } | null;
}

function sameUrl(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/\/+$/, '').replace(/\.git$/, '').replace(/^[a-z]+:\/\/[^@/]*@/i, m => m.replace(/[^/]*@$/, ''));
  return norm(a) === norm(b);
}

/** Fold repo and workflow events over the session's spec. */
export function sideInfo(session: Session | undefined, events: SessionEvent[]): SideInfo {
  const repos: RepoStatus[] = (session?.spec.repos ?? []).map(r => ({
    url: r.url,
    branch: r.branch,
    state: 'pending',
    detail: ''
  }));
  let workflow: SideInfo['workflow'] = session?.spec.workflow
    ? { name: session.spec.workflow, source: session.spec.workflow, description: '', commands: [], error: '' }
    : null;
  for (const ev of events) {
    const d = ev.data || {};
    if (ev.type === 'REPO_CLONED' || ev.type === 'REPO_CLONE_FAILED') {
      let r = repos.find(x => sameUrl(x.url, String(d.url ?? '')) && x.state !== 'cloned');
      if (!r) {
        r = { url: String(d.url ?? ''), branch: d.branch, state: 'pending', detail: '' };
        repos.push(r);
      }
      r.state = ev.type === 'REPO_CLONED' ? 'cloned' : 'failed';
      r.branch = d.branch ?? r.branch;
      r.detail =
        ev.type === 'REPO_CLONED'
          ? [d.path, d.commit ? String(d.commit).slice(0, 8) : ''].filter(Boolean).join(' @ ')
          : String(d.error ?? 'clone failed');
    } else if (ev.type === 'WORKFLOW_ATTACHED') {
      workflow = {
        name: String(d.name ?? d.id ?? ''),
        source: String(d.source ?? ''),
        description: String(d.description ?? ''),
        commands: Array.isArray(d.commands) ? d.commands.map(String) : [],
        error: ''
      };
    } else if (ev.type === 'WORKFLOW_FAILED') {
      workflow = {
        name: String(d.source ?? ''),
        source: String(d.source ?? ''),
        description: '',
        commands: [],
        error: String(d.error ?? 'failed')
      };
    }
  }
  return { repos, workflow };
}

export class SessionView extends Widget {
  readonly model: SessionsModel;
  readonly api: SessionsApi;
  readonly stream: SessionStream;
  readonly ui: UiState = createUiState();
  readonly chat: ChatController;
  private _open?: (id: string) => void;
  private _events: SessionEvent[] = [];
  private _workflows: WorkflowInfo[] | null | undefined = undefined;
  private _drive: boolean;
  private _deleted = new Signal<this, void>(this);
  private _ageTimer: any;

  // toolbar
  readonly renameButton = this._button('Rename', 'Rename this session', () => void this.rename());
  readonly cloneButton = this._button('Clone', 'A new session with the same settings and repos (no chat history)', () => void this.clone());
  readonly exportButton = this._button('Export ▾', 'Download the transcript (Markdown, PDF) or save it to Google Drive', () => this.toggleExportMenu());
  readonly deleteButton = this._button('Delete', 'Permanently remove the session and its data', () => void this.remove(), 'jps-lab-danger');
  readonly asideButton = this._button('Details', 'Show or hide the session sidebar', () => this.toggleAside());
  readonly exportMenu = h('div', { class: 'jps-lab-menu', role: 'menu' });
  readonly toolbarStatus = h('span', { class: 'jps-lab-toolbar-status', role: 'status' });

  // aside
  readonly aside = h('aside', { class: 'jps-lab-aside', 'aria-label': 'Session details' });
  readonly detailsBody = h('dl', { class: 'jps-lab-details' });
  readonly reposBody = h('ul', { class: 'jps-lab-repo-list' });
  readonly repoUrl = h('input', {
    type: 'text',
    class: 'jp-mod-styled jps-lab-input',
    name: 'add_repo_url',
    placeholder: 'git URL or server path'
  });
  readonly repoBranch = h('input', {
    type: 'text',
    class: 'jp-mod-styled jps-lab-input jps-lab-branch',
    name: 'add_repo_branch',
    placeholder: 'branch'
  });
  readonly repoAdd = h('button', { type: 'button', class: 'jp-mod-styled jp-mod-accept jps-lab-small-button' }, 'Add');
  readonly repoError = h('div', { class: 'jps-lab-field-error', role: 'alert' });
  readonly repoHint = h('div', { class: 'jps-lab-hint' });
  readonly workflowBody = h('div', { class: 'jps-lab-workflow' });
  readonly workflowPick = h('select', { class: 'jp-mod-styled jps-lab-input', name: 'attach_workflow' });
  readonly workflowText = h('input', {
    type: 'text',
    class: 'jp-mod-styled jps-lab-input',
    name: 'attach_workflow_text',
    placeholder: 'built-in name, folder or git URL'
  });
  readonly workflowAttach = h('button', { type: 'button', class: 'jp-mod-styled jp-mod-accept jps-lab-small-button' }, 'Attach');
  readonly workflowError = h('div', { class: 'jps-lab-field-error', role: 'alert' });

  constructor(opts: ViewOptions) {
    super();
    this.id = `jps-session-${opts.id}`;
    this.model = opts.model;
    this.api = opts.model.api;
    this._open = opts.open;
    this._drive = opts.drive ?? true;
    this.addClass('jps-lab-view');
    this.title.closable = true;
    this.title.caption = opts.id;
    this.title.label = opts.model.get(opts.id)?.display_name ?? 'Session';
    this.title.className = 'jps-lab-tab';
    this._sid = opts.id;

    const chatHost = h('div', { class: 'jps-lab-chat' });
    const toolbar = h(
      'div',
      { class: 'jps-lab-toolbar', role: 'toolbar', 'aria-label': 'Session operations' },
      this.renameButton,
      this.cloneButton,
      h('span', { class: 'jps-lab-menu-anchor' }, this.exportButton, this.exportMenu),
      this.deleteButton,
      this.toolbarStatus,
      h('span', { class: 'jps-lab-spacer' }),
      this.asideButton
    );
    this.exportMenu.style.display = 'none';
    this.aside.append(
      this._section('Details', this.detailsBody),
      this._section(
        'Repositories',
        this.reposBody,
        h('div', { class: 'jps-lab-inline jps-lab-add-repo' }, this.repoUrl, this.repoBranch, this.repoAdd),
        this.repoError,
        this.repoHint
      ),
      this._section(
        'Workflow',
        this.workflowBody,
        h('div', { class: 'jps-lab-inline' }, this.workflowPick, this.workflowAttach),
        this.workflowText,
        this.workflowError
      )
    );
    this.node.append(h('div', { class: 'jps-lab-main' }, toolbar, chatHost), this.aside);
    this.repoAdd.addEventListener('click', () => void this.addRepo());
    for (const input of [this.repoUrl, this.repoBranch]) {
      input.addEventListener('keydown', e => {
        e.stopPropagation();
        if (e.key === 'Enter') {
          void this.addRepo();
        }
      });
    }
    this.workflowText.addEventListener('keydown', e => {
      e.stopPropagation();
      if (e.key === 'Enter') {
        void this.attachWorkflow();
      }
    });
    this.workflowPick.addEventListener('change', () => {
      this.workflowText.style.display = this.workflowPick.value === '__custom__' ? '' : 'none';
    });
    this.workflowAttach.addEventListener('click', () => void this.attachWorkflow());
    this.node.addEventListener('click', e => {
      if (!this.exportMenu.contains(e.target as Node) && e.target !== this.exportButton) {
        this.exportMenu.style.display = 'none';
      }
    });

    this.stream = new SessionStream(this.api, opts.id, opts.stream);
    this.chat = mount(chatHost, {
      ui: this.ui,
      actions: {
        send: (text: string) => this.api.send(opts.id, text),
        answer: (toolCallId, answers) => this.api.answer(opts.id, toolCallId, answers),
        stop: async () => this.model.upsert(await this.api.stop(opts.id)),
        resume: async () => this.model.upsert(await this.api.resume(opts.id)),
        feedback: (messageId, rating, comment) => this.api.feedback(opts.id, messageId, rating, comment)
      }
    });
    // Thumbs open a modal with the comment box (the spec's feedback modal): catch the click
    // before the chat's own inline box opens, then send through the same API.
    this.chat.root.addEventListener('click', e => this._onThumb(e), true);

    this.stream.changed.connect(this._render, this);
    this.stream.statusChanged.connect((_, status) => {
      this._render();
      if (status === 'closed') {
        // the server ended the stream: the session was deleted (here, in another tab, or by the API)
        setTimeout(() => this._gone(), 0);
      }
    });
    this.stream.events.connect((_, ev) => {
      this._events.push(ev);
      this.model.applyEvent(opts.id, ev);
      if (/^(REPO_|WORKFLOW_|PHASE_CHANGED)/.test(ev.type)) {
        this._scheduleAside();
      }
    });
    this.model.changed.connect(this._onModelChanged, this);
    this._render();
    this._renderAside();
  }

  /** the session id */
  get sessionId(): string {
    return this._sid;
  }

  private _sid: string;

  get session(): Session | undefined {
    return this.model.get(this.sessionId);
  }

  /** emitted when the session was deleted (from here or elsewhere) */
  get deleted(): ISignal<this, void> {
    return this._deleted;
  }

  get phase(): string {
    return this.stream.state.phase || this.session?.phase || '';
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.stream.start();
    if (!this.session) {
      this.api
        .get(this.sessionId)
        .then(s => this.model.upsert(s))
        .catch(e => {
          if (e instanceof ApiError && e.status === 404) {
            this._gone();
          }
        });
    }
    if (this._workflows === undefined) {
      this._workflows = null;
      this.api
        .workflows()
        .then(w => {
          this._workflows = w;
          this._renderAside();
        })
        .catch(() => undefined);
    }
    clearInterval(this._ageTimer);
    this._ageTimer = setInterval(() => this._renderDetails(), 30_000);
  }

  protected onBeforeDetach(msg: Message): void {
    clearInterval(this._ageTimer);
    super.onBeforeDetach(msg);
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    const w = msg.width >= 0 ? msg.width : this.node.offsetWidth;
    this.node.classList.toggle('jps-lab-narrow', w > 0 && w < 720);
  }

  protected onActivateRequest(msg: Message): void {
    const input = this.node.querySelector<HTMLTextAreaElement>('textarea.jps-input');
    if (input && !input.disabled) {
      input.focus();
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    clearInterval(this._ageTimer);
    clearTimeout(this._asideTimer);
    this.stream.dispose();
    this.chat.destroy();
    this.model.changed.disconnect(this._onModelChanged, this);
    super.dispose();
  }

  // -------------------------------------------------------------------------------------------
  private _button(label: string, title: string, onclick: () => void, extra = ''): HTMLButtonElement {
    return h('button', { type: 'button', class: `jps-lab-tool-button ${extra}`, title, onclick }, label);
  }

  private _section(title: string, ...body: HTMLElement[]): HTMLElement {
    return h(
      'section',
      { class: 'jps-lab-section', 'data-section': title.toLowerCase() },
      h('h3', { class: 'jps-lab-section-title' }, title),
      ...body
    );
  }

  private _onModelChanged(): void {
    const s = this.session;
    if (s) {
      this.title.label = this.stream.state.displayName || s.display_name;
    } else if (this.model.loaded && !this.model.error && this.stream.status !== 'connecting') {
      // gone from the list: deleted elsewhere (another tab)
      void this.api.get(this.sessionId).catch(e => {
        if (e instanceof ApiError && e.status === 404) {
          this._gone();
        }
      });
    }
    this._render();
    this._scheduleAside();
  }

  private _isGone = false;
  private _gone(): void {
    if (this.isDisposed || this._isGone) {
      return;
    }
    this._isGone = true;
    this.stream.dispose();
    this.chat.update(this.stream.state, { session: this._meta(), status: 'closed' });
    this._refreshToolbar();
    this._deleted.emit();
  }

  private _meta(): Record<string, any> {
    const s = this.session;
    return s ? { ...s, display_name: this.stream.state.displayName || s.display_name } : { id: this.sessionId };
  }

  private _render(): void {
    if (this.isDisposed) {
      return;
    }
    const state: ChatState = this.stream.state;
    const s = this.session;
    this.chat.update(state, { session: this._meta(), status: this.stream.statusText, startSeq: 0 });
    const name = state.displayName || s?.display_name;
    if (name) {
      this.title.label = name;
    }
    this.title.className = `jps-lab-tab jps-lab-tab-${(this.phase || 'unknown').toLowerCase()}`;
    this._refreshToolbar();
  }

  private _refreshToolbar(): void {
    const p = this.phase;
    const closed = this.stream.status === 'closed' || this._isGone;
    this.renameButton.disabled = closed || !allowed('rename', p);
    this.cloneButton.disabled = closed || !allowed('clone', p);
    this.exportButton.disabled = closed || !allowed('export', p);
    this.deleteButton.disabled = closed || !allowed('delete', p);
    const canAdd = !closed && allowed('add_repo', p);
    this.repoAdd.disabled = !canAdd || this._busyRepo;
    this.repoUrl.disabled = this.repoBranch.disabled = !canAdd;
    this.repoHint.textContent = canAdd ? '' : 'Resume the session to add repositories.';
    const canAttach = !closed && p !== 'Stopping';
    this.workflowAttach.disabled = !canAttach || this._busyWorkflow;
  }

  private _asideTimer: any = null;
  private _scheduleAside(): void {
    if (this._asideTimer === null) {
      this._asideTimer = setTimeout(() => {
        this._asideTimer = null;
        if (!this.isDisposed) {
          this._renderAside();
        }
      }, 50);
    }
  }

  private _renderDetails(): void {
    const s = this.session;
    const rows: [string, string][] = s
      ? [
          ['Model', s.spec.model],
          ['Phase', this.phase + (s.reason && this.phase !== 'Running' ? ` (${s.reason})` : '')],
          ['Temperature', String(s.spec.temperature)],
          ['Max tokens', String(s.spec.max_tokens)],
          ['Timeout', s.spec.timeout ? duration(s.spec.timeout) : 'none'],
          [
            'Inactivity',
            s.spec.inactivity_timeout === null || s.spec.inactivity_timeout === undefined
              ? 'workspace setting'
              : duration(s.spec.inactivity_timeout)
          ],
          ['Thinking', s.spec.thinking && s.spec.thinking.enabled !== false ? `${s.spec.thinking.budget_tokens} tokens` : 'model default'],
          ['Sandbox', s.sandbox + (s.isolated ? '' : ' (not isolated)')],
          ['Created', age(s.created)],
          ['Id', s.id]
        ]
      : [['Id', this.sessionId]];
    this.detailsBody.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', { title: v }, v)]));
  }

  private _renderAside(): void {
    this._renderDetails();
    const info = sideInfo(this.session, this._events);
    this.reposBody.replaceChildren(
      ...(info.repos.length
        ? info.repos.map(r =>
            h(
              'li',
              { class: `jps-lab-repo jps-lab-repo-${r.state}`, title: r.detail },
              h('span', { class: 'jps-lab-repo-mark', 'aria-hidden': 'true' }, { cloned: '✓', failed: '✗', cloning: '…', pending: '•' }[r.state]),
              h('span', { class: 'jps-lab-repo-url' }, r.url + (r.branch ? ` @ ${r.branch}` : '')),
              r.detail ? h('div', { class: 'jps-lab-hint' }, r.detail) : null
            )
          )
        : [h('li', { class: 'jps-lab-empty' }, 'No repositories attached.')])
    );
    const wf = info.workflow;
    this.workflowBody.replaceChildren(
      wf
        ? h(
            'div',
            { class: 'jps-lab-workflow-current' + (wf.error ? ' jps-lab-error-text' : '') },
            h('strong', null, wf.name),
            wf.description ? h('div', { class: 'jps-lab-hint' }, wf.description) : null,
            wf.commands.length ? h('div', { class: 'jps-lab-hint' }, 'Commands: ' + wf.commands.map(c => '/' + c).join(' ')) : null,
            wf.error ? h('div', null, wf.error) : null
          )
        : h('div', { class: 'jps-lab-empty' }, 'No workflow.')
    );
    const current = this.workflowPick.value;
    const flows = this._workflows;
    this.workflowPick.replaceChildren(
      h('option', { value: '' }, wf ? 'Switch workflow…' : 'Choose a workflow…'),
      ...(flows ?? []).filter(f => f.enabled).map(f => h('option', { value: f.source, title: f.description }, f.name)),
      h('option', { value: '__custom__' }, 'Custom (folder or git URL)…')
    );
    this.workflowPick.value = [...this.workflowPick.options].some(o => o.value === current) ? current : '';
    if (flows === null) {
      this.workflowPick.value = '__custom__';
      this.workflowPick.style.display = 'none';
    } else {
      this.workflowPick.style.display = '';
    }
    this.workflowText.style.display = this.workflowPick.value === '__custom__' ? '' : 'none';
    this._refreshToolbar();
  }

  // -------------------------------------------------------------------------------------------
  // operations

  private _status(text: string): void {
    this.toolbarStatus.textContent = text;
  }

  private async _run<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    this._status(what);
    try {
      const r = await fn();
      this._status('');
      return r;
    } catch (e: any) {
      this._status('');
      this.chat.showError(e?.message ?? String(e));
      return undefined;
    }
  }

  async rename(): Promise<void> {
    const s = this.session;
    const input = h('input', {
      type: 'text',
      class: 'jp-mod-styled jps-lab-input',
      name: 'rename',
      maxlength: '150',
      value: this.stream.state.displayName || s?.display_name || ''
    });
    const error = h('div', { class: 'jps-lab-field-error', role: 'alert' });
    const modal = new Modal({
      title: 'Rename session',
      body: h('div', { class: 'jps-lab-field' }, h('label', { class: 'jps-lab-label' }, 'Display name', input), error),
      acceptLabel: 'Rename',
      onAccept: async () => {
        const name = input.value.trim();
        error.textContent = !name ? 'a name is needed' : name.length > 100 ? 'at most 100 characters' : '';
        if (error.textContent) {
          return false;
        }
        try {
          this.model.upsert(await this.api.rename(this.sessionId, name));
          return true;
        } catch (e: any) {
          error.textContent = e instanceof ApiError && e.fields.length ? e.fields.map(f => f.message).join('; ') : e?.message ?? String(e);
          return false;
        }
      }
    });
    input.addEventListener('keydown', e => {
      if (e.key === 'Enter') {
        e.preventDefault();
        void modal.accept();
      }
    });
    setTimeout(() => input.select(), 0);
    await modal.open();
  }

  async clone(): Promise<void> {
    const copy = await this._run('Cloning…', () => this.api.clone(this.sessionId));
    if (copy) {
      this.model.upsert(copy);
      this._open?.(copy.id);
    }
  }

  toggleExportMenu(): void {
    if (this.exportMenu.style.display !== 'none') {
      this.exportMenu.style.display = 'none';
      return;
    }
    const item = (label: string, fn: () => void, disabled = false, title = '') =>
      h('button', { type: 'button', class: 'jps-lab-menu-item', role: 'menuitem', disabled, title, onclick: () => {
        this.exportMenu.style.display = 'none';
        fn();
      } }, label);
    this.exportMenu.replaceChildren(
      item('Markdown (.md)', () => void this.exportAs('markdown')),
      item('PDF (.pdf)', () => void this.exportAs('pdf')),
      item('Notebook (.ipynb)', () => void this.exportAs('ipynb'))
    );
    if (this._drive) {
      const running = this.phase === 'Running';
      const drive = item('Save to Google Drive…', () => void this.exportToDrive('markdown'), true,
        'checking Google Drive…');
      drive.classList.add('jps-lab-drive');
      this.exportMenu.append(h('div', { class: 'jps-lab-menu-sep' }), drive);
      void this.api.drive().then(st => {
        if (!st) {
          drive.remove();
          return;
        }
        drive.disabled = !running || !st.configured;
        drive.title = !st.configured
          ? 'Google Drive is not configured on this server'
          : !running
            ? 'Saving to Drive needs a Running session'
            : st.connected
              ? 'Save the Markdown export to your Drive'
              : 'Connect Google Drive, then save';
      }).catch(() => drive.remove());
    }
    this.exportMenu.style.display = '';
    (this.exportMenu.firstElementChild as HTMLElement | null)?.focus();
  }

  async exportAs(format: string): Promise<void> {
    const file = await this._run(`Exporting ${format}…`, () => this.api.exportFile(this.sessionId, format));
    if (file) {
      saveBlob(file.blob, file.filename);
      this._status(`Saved ${file.filename}`);
      setTimeout(() => this.toolbarStatus.textContent === `Saved ${file.filename}` && this._status(''), 4000);
    }
  }

  async exportToDrive(format: string): Promise<void> {
    this._status('Saving to Google Drive…');
    try {
      const f = await this.api.exportToDrive(this.sessionId, format);
      this._status('');
      const body = h('p', { class: 'jps-lab-modal-text' }, `Saved as ${f.name}. `,
        f.link ? h('a', { href: f.link, target: '_blank', rel: 'noopener noreferrer' }, 'Open in Drive') : null);
      await confirmModal('Saved to Google Drive', body, 'OK');
    } catch (e: any) {
      this._status('');
      const url = e instanceof ApiError ? e.detail?.connect_url : null;
      if (url && (await confirmModal('Connect Google Drive', 'Google Drive is not connected for you yet. Connect it now? (then save again)', 'Connect'))) {
        window.open(url, '_blank', 'noopener');
      } else if (!url) {
        this.chat.showError(e?.message ?? String(e));
      }
    }
  }

  async remove(): Promise<boolean> {
    const s = this.session;
    const name = this.stream.state.displayName || s?.display_name || this.sessionId;
    const ok = await confirmModal(
      'Delete session',
      `Permanently delete “${name}”? Its chat history, workspace and sandbox are removed. This cannot be undone.`,
      'Delete',
      true
    );
    if (!ok) {
      return false;
    }
    const done = await this._run('Deleting…', async () => {
      await this.api.remove(this.sessionId);
      return true;
    });
    if (done) {
      this.model.remove(this.sessionId);
      this._gone();
    }
    return !!done;
  }

  toggleAside(force?: boolean): void {
    const hidden = force === undefined ? !this.node.classList.contains('jps-lab-aside-hidden') : !force;
    this.node.classList.toggle('jps-lab-aside-hidden', hidden);
    this.asideButton.setAttribute('aria-pressed', hidden ? 'false' : 'true');
  }

  private _busyRepo = false;
  async addRepo(): Promise<void> {
    const errors: FieldErrors = {};
    const repo = checkRepo({ url: this.repoUrl.value, branch: this.repoBranch.value }, 'repo', errors);
    this.repoError.textContent = Object.values(errors).join('; ');
    if (!repo || this._busyRepo) {
      return;
    }
    this._busyRepo = true;
    this.repoAdd.textContent = 'Cloning…';
    this._refreshToolbar();
    try {
      const s = await this.api.addRepo(this.sessionId, repo);
      this.model.upsert(s);
      this.repoUrl.value = '';
      this.repoBranch.value = '';
    } catch (e: any) {
      this.repoError.textContent =
        e instanceof ApiError && e.fields.length ? e.fields.map(f => `${f.field}: ${f.message}`).join('; ') : e?.message ?? String(e);
    } finally {
      this._busyRepo = false;
      this.repoAdd.textContent = 'Add';
      this._refreshToolbar();
      this._renderAside();
    }
  }

  private _busyWorkflow = false;
  async attachWorkflow(): Promise<void> {
    const value = this.workflowPick.value === '__custom__' ? this.workflowText.value.trim() : this.workflowPick.value;
    this.workflowError.textContent = value ? '' : 'choose a workflow (or type a folder or git URL)';
    if (!value || this._busyWorkflow) {
      return;
    }
    this._busyWorkflow = true;
    this._refreshToolbar();
    try {
      this.model.upsert(await this.api.attachWorkflow(this.sessionId, value));
      this.workflowText.value = '';
      this.workflowPick.value = '';
    } catch (e: any) {
      this.workflowError.textContent =
        e instanceof ApiError && e.fields.length ? e.fields.map(f => f.message).join('; ') : e?.message ?? String(e);
    } finally {
      this._busyWorkflow = false;
      this._renderAside();
    }
  }

  private _onThumb(e: MouseEvent): void {
    const btn = (e.target as HTMLElement).closest<HTMLButtonElement>('.jps-thumb');
    if (!btn || !this.chat.root.contains(btn)) {
      return;
    }
    const key = btn.closest<HTMLElement>('[data-key]')?.dataset.key ?? '';
    const item = this.stream.state.byKey.get(key);
    if (!item || item.kind !== 'assistant') {
      return;
    }
    e.stopPropagation();
    e.preventDefault();
    const rating = btn.dataset.rating === 'down' ? 'down' : 'up';
    void feedbackModal(rating, comment => this.api.feedback(this.sessionId, item.message_id, rating, comment || undefined));
  }
}
