/**
 * The left-sidebar panel: the user's sessions (name, model, phase, agent-state badge, age) with a
 * filter, kept live by the model (the server's session watch, polling while it is down).
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import type { Session } from './api';
import { age, h } from './dom';
import { SessionsModel } from './model';

export interface PanelOptions {
  model: SessionsModel;
  /** open a session's view */
  open: (id: string) => void;
  /** start the New Session dialog */
  create: () => void;
  /** polling interval while the panel shows / while hidden (ms) */
  fastPoll?: number;
  slowPoll?: number;
}

/** Does a session match the filter text? (name, model, phase, agent state, id; all words) */
export function matches(s: Session, filter: string): boolean {
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) {
    return true;
  }
  const hay = [s.display_name, s.spec.model, s.phase, s.agent_state ?? '', s.id, s.agent_state === 'waiting_input' ? 'waiting input' : '']
    .join(' ')
    .toLowerCase();
  return words.every(w => hay.includes(w));
}

export class SessionsPanel extends Widget {
  readonly model: SessionsModel;
  readonly filter = h('input', {
    type: 'search',
    class: 'jp-mod-styled jps-lab-input jps-lab-filter',
    placeholder: 'Filter sessions',
    title: 'Filter by name, model, phase or agent state',
    'aria-label': 'Filter sessions'
  });
  readonly list = h('ul', { class: 'jps-lab-list', role: 'list', 'aria-label': 'Sessions' });
  readonly status = h('div', { class: 'jps-lab-list-status', role: 'status' });
  private _opts: PanelOptions;
  /** ms between list refreshes while the panel shows (settings: pollInterval) */
  fastPoll: number;
  private _selected = '';
  private _ageTimer: any = null;

  constructor(opts: PanelOptions) {
    super();
    this._opts = opts;
    this.fastPoll = opts.fastPoll ?? 3000;
    this.model = opts.model;
    this.id = 'jupyter-sessions-panel';
    this.addClass('jps-lab-panel');
    this.title.caption = 'Agent sessions';
    const newButton = h(
      'button',
      { type: 'button', class: 'jp-mod-styled jp-mod-accept jps-lab-new', title: 'Create a session (New Session dialog)', onclick: () => opts.create() },
      '+ New Session'
    );
    const refresh = h(
      'button',
      { type: 'button', class: 'jps-lab-icon-button jps-lab-refresh', title: 'Refresh the list', 'aria-label': 'Refresh', onclick: () => void this.model.refresh() },
      '⟳'
    );
    this.node.append(
      h('header', { class: 'jps-lab-panel-header' }, h('h2', { class: 'jps-lab-panel-title' }, 'Agent Sessions'), refresh),
      h('div', { class: 'jps-lab-panel-actions' }, newButton),
      this.filter,
      this.status,
      this.list
    );
    this.filter.addEventListener('input', () => this.render());
    this.filter.addEventListener('keydown', e => {
      e.stopPropagation();
      if (e.key === 'Escape') {
        this.filter.value = '';
        this.render();
      }
    });
    this.list.addEventListener('keydown', e => this._onListKey(e));
    this.model.changed.connect(this.render, this);
    this.render();
  }

  /** mark the session whose view is current */
  set selected(id: string) {
    this._selected = id;
    for (const li of this.list.querySelectorAll<HTMLElement>('.jps-lab-item')) {
      li.classList.toggle('jp-mod-selected', li.dataset.id === id);
      li.setAttribute('aria-current', li.dataset.id === id ? 'true' : 'false');
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.poll(this.fastPoll);
    void this.model.refresh();
    clearInterval(this._ageTimer);
    this._ageTimer = setInterval(() => this.render(), 30_000);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.poll(this._opts.slowPoll ?? 15000);
    clearInterval(this._ageTimer);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.onAfterShow(msg);
    } else {
      this.model.poll(this._opts.slowPoll ?? 15000);
    }
  }

  dispose(): void {
    clearInterval(this._ageTimer);
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }

  render(): void {
    const all = this.model.sessions;
    const shown = all.filter(s => matches(s, this.filter.value));
    if (this.model.error) {
      this.status.textContent = `Cannot list sessions: ${this.model.error}`;
      this.status.className = 'jps-lab-list-status jps-lab-error-text';
    } else if (!this.model.loaded) {
      this.status.textContent = 'Loading…';
      this.status.className = 'jps-lab-list-status';
    } else if (!all.length) {
      this.status.textContent = 'No sessions yet. Create one to start an agent with its own sandbox.';
      this.status.className = 'jps-lab-list-status';
    } else if (!shown.length) {
      this.status.textContent = `No session matches “${this.filter.value}”.`;
      this.status.className = 'jps-lab-list-status';
    } else {
      this.status.textContent = '';
      this.status.className = 'jps-lab-list-status';
    }
    const now = Date.now();
    const focusedId = (document.activeElement as HTMLElement | null)?.closest?.<HTMLElement>('.jps-lab-item')?.dataset.id;
    this.list.replaceChildren(...shown.map(s => this._item(s, now)));
    if (focusedId) {
      this.list.querySelector<HTMLElement>(`.jps-lab-item[data-id="${CSS.escape(focusedId)}"]`)?.focus();
    }
  }

  private _item(s: Session, now: number): HTMLElement {
    const agent = s.phase === 'Running' && s.agent_state ? s.agent_state : '';
    const li = h(
      'li',
      {
        class: 'jps-lab-item' + (s.id === this._selected ? ' jp-mod-selected' : ''),
        'data-id': s.id,
        'data-phase': s.phase,
        tabindex: '0',
        role: 'listitem',
        title: `${s.display_name}\n${s.id}${s.reason ? '\n' + s.reason : ''}`,
        onclick: () => this._opts.open(s.id)
      },
      h(
        'div',
        { class: 'jps-lab-item-top' },
        h('span', { class: 'jps-lab-item-name' }, s.display_name),
        h('span', { class: 'jps-lab-item-age', title: s.created }, age(s.created, now))
      ),
      h(
        'div',
        { class: 'jps-lab-item-bottom' },
        h('span', { class: 'jps-lab-item-model' }, s.spec.model),
        h('span', { class: 'jps-badge jps-phase', 'data-phase': s.phase }, s.phase),
        agent
          ? h('span', { class: 'jps-badge jps-agent-state', 'data-state': agent }, agent.replace('_', ' '))
          : null
      )
    );
    return li;
  }

  private _onListKey(e: KeyboardEvent): void {
    const item = (e.target as HTMLElement).closest<HTMLElement>('.jps-lab-item');
    if (!item) {
      return;
    }
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      this._opts.open(item.dataset.id!);
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = (e.key === 'ArrowDown' ? item.nextElementSibling : item.previousElementSibling) as HTMLElement | null;
      next?.focus();
    }
  }
}
