/**
 * The New Session dialog: every setting of the spec's creation table, checked in the browser the
 * way the API checks it, and the API's own 422s shown next to the field they name.
 */
import { ApiError, ModelInfo, Session, SessionsApi, WorkflowInfo, WorkspaceInfo } from './api';
import { duration, h } from './dom';
import { Modal } from './modal';
import { FieldErrors, FormValues, UI_LIMITS, formFieldOf, validateForm } from './validate';

/** User defaults from the settings editor (schema/plugin.json). */
export interface SessionDefaults {
  model: string;
  temperature: number;
  maxTokens: number;
  timeout: number;
}

export const BUILTIN_DEFAULTS: SessionDefaults = {
  model: '',
  temperature: 0.7,
  maxTokens: 4000,
  timeout: 300
};

export const CUSTOM_WORKFLOW = '__custom__';

interface Field {
  row: HTMLElement;
  error: HTMLElement;
}

/** The form (a plain element), its values and its error slots; the modal wraps it. */
export class NewSessionForm {
  readonly node: HTMLFormElement;
  readonly fields = new Map<string, Field>();
  models: ModelInfo[] = [];
  workspaces: WorkspaceInfo[] = [];
  workflows: WorkflowInfo[] | null = null;
  touched = new Set<string>();
  showAll = false;

  readonly name = h('input', {
    type: 'text',
    class: 'jp-mod-styled jps-lab-input',
    name: 'display_name',
    maxlength: String(UI_LIMITS.display_name.max + 50),
    placeholder: 'Auto-generated from the first message'
  });
  readonly workspace = h('select', { class: 'jp-mod-styled jps-lab-input', name: 'workspace' });
  readonly model = h('select', { class: 'jp-mod-styled jps-lab-input', name: 'model' });
  readonly modelHint = h('div', { class: 'jps-lab-hint' });
  readonly temperature = h('input', {
    type: 'range',
    class: 'jps-lab-slider',
    name: 'temperature',
    min: String(UI_LIMITS.temperature.min),
    max: String(UI_LIMITS.temperature.max),
    step: String(UI_LIMITS.temperature.step)
  });
  readonly temperatureValue = h('output', { class: 'jps-lab-slider-value' });
  readonly temperatureLimit = h('div', { class: 'jps-lab-hint jps-lab-temp-limit' });
  readonly maxTokens = h('input', {
    type: 'number',
    class: 'jp-mod-styled jps-lab-input jps-lab-number',
    name: 'max_tokens',
    min: String(UI_LIMITS.max_tokens.min),
    max: String(UI_LIMITS.max_tokens.max),
    step: '100'
  });
  readonly timeout = h('input', {
    type: 'number',
    class: 'jp-mod-styled jps-lab-input jps-lab-number',
    name: 'timeout',
    min: String(UI_LIMITS.timeout.min),
    max: String(UI_LIMITS.timeout.max),
    step: '30'
  });
  readonly inactivity = h('input', {
    type: 'number',
    class: 'jp-mod-styled jps-lab-input jps-lab-number',
    name: 'inactivity_timeout',
    min: '0',
    step: '5',
    placeholder: 'workspace setting'
  });
  readonly inactivityHint = h('div', { class: 'jps-lab-hint' });
  readonly thinking = h('input', { type: 'checkbox', name: 'thinking' });
  readonly thinkingBudget = h('input', {
    type: 'number',
    class: 'jp-mod-styled jps-lab-input jps-lab-number',
    name: 'thinking_budget',
    min: '1024',
    step: '256',
    value: '2048'
  });
  readonly thinkingHint = h('div', { class: 'jps-lab-hint' });
  readonly repoRows = h('div', { class: 'jps-lab-repos' });
  readonly addRepo = h('button', { type: 'button', class: 'jps-lab-link-button' }, '+ Add repository');
  readonly workflow = h('select', { class: 'jp-mod-styled jps-lab-input', name: 'workflow' });
  readonly workflowText = h('input', {
    type: 'text',
    class: 'jp-mod-styled jps-lab-input',
    name: 'workflow_text',
    placeholder: 'Built-in name, server folder, or git URL[#branch][:path]'
  });
  readonly workflowHint = h('div', { class: 'jps-lab-hint' });
  readonly prompt = h('textarea', {
    class: 'jp-mod-styled jps-lab-input jps-lab-prompt',
    name: 'initial_prompt',
    rows: '4',
    placeholder: 'Be specific: what should the agent do, and where? (optional)'
  });
  readonly formError = h('div', { class: 'jps-lab-form-error', role: 'alert' });

  constructor(defaults: SessionDefaults = BUILTIN_DEFAULTS) {
    this.temperature.value = String(defaults.temperature);
    this.maxTokens.value = String(defaults.maxTokens);
    this.timeout.value = String(defaults.timeout);
    this._defaultModel = defaults.model;

    this.node = h(
      'form',
      { class: 'jps-lab-form', novalidate: true, onsubmit: (e: Event) => e.preventDefault() },
      this.field('display_name', 'Display name', this.name),
      this.field('workspace', 'Workspace', this.workspace),
      this.field('model', 'Model', this.model, this.modelHint),
      this.field(
        'temperature',
        'Temperature',
        h('div', { class: 'jps-lab-slider-row' }, this.temperature, this.temperatureValue),
        this.temperatureLimit
      ),
      h(
        'div',
        { class: 'jps-lab-pair' },
        this.field(
          'max_tokens',
          'Max tokens',
          this.maxTokens,
          h('div', { class: 'jps-lab-hint' }, `per response, ${UI_LIMITS.max_tokens.min}–${UI_LIMITS.max_tokens.max}`)
        ),
        this.field(
          'timeout',
          'Timeout (s)',
          this.timeout,
          h('div', { class: 'jps-lab-hint' }, `working time, ${UI_LIMITS.timeout.min}–${UI_LIMITS.timeout.max} s`)
        ),
        this.field('inactivity_timeout', 'Inactivity timeout', this.inactivity, this.inactivityHint)
      ),
      this.field(
        'thinking.budget_tokens',
        'Extended thinking',
        h(
          'div',
          { class: 'jps-lab-inline' },
          h('label', { class: 'jps-lab-check' }, this.thinking, 'on'),
          h('span', { class: 'jps-lab-hint' }, 'budget'),
          this.thinkingBudget,
          h('span', { class: 'jps-lab-hint' }, 'tokens')
        ),
        this.thinkingHint
      ),
      this.field('repos', 'Repositories', this.repoRows, this.addRepo),
      this.field('workflow', 'Workflow', this.workflow, this.workflowText, this.workflowHint),
      this.field('initial_prompt', 'First message', this.prompt),
      this.formError
    );
    // thinking.enabled errors (Gemini 2.5 Pro) share the thinking row
    this.fields.set('thinking.enabled', this.fields.get('thinking.budget_tokens')!);
    this.addRepo.addEventListener('click', () => {
      this.addRepoRow();
      const inputs = this.repoRows.querySelectorAll<HTMLInputElement>('input[name="repo_url"]');
      inputs[inputs.length - 1]?.focus();
    });
    this.workflow.addEventListener('change', () => this._syncWorkflow());
    this.model.addEventListener('change', () => this._syncModel(true));
    this.thinking.addEventListener('change', () => this._syncThinking(true));
    this.workspace.addEventListener('change', () => void this._changeWorkspace());
    this.node.addEventListener('input', e => this._onInput(e));
    this.node.addEventListener('change', e => this._onInput(e));
    this._syncTemperature();
    this._syncWorkflow();
  }

  private _defaultModel: string;
  api: SessionsApi | null = null;

  /** One labelled row with an error slot right under its input. */
  field(key: string, label: string, ...controls: (HTMLElement | null)[]): HTMLElement {
    const error = h('div', { class: 'jps-lab-field-error', role: 'alert', 'data-field': key });
    const id = `jps-lab-${key.replace(/\W/g, '-')}`;
    const first = controls[0];
    if (first && /^(INPUT|SELECT|TEXTAREA)$/.test(first.tagName)) {
      first.id = id;
    }
    const row = h(
      'div',
      { class: 'jps-lab-field', 'data-field': key },
      h('label', { class: 'jps-lab-label', for: id }, label),
      ...controls,
      error
    );
    this.fields.set(key, { row, error });
    return row;
  }

  addRepoRow(url = '', branch = ''): void {
    const i = this.repoRows.children.length;
    const urlInput = h('input', {
      type: 'text',
      class: 'jp-mod-styled jps-lab-input',
      name: 'repo_url',
      placeholder: 'https://github.com/org/repo.git or /path/on/server',
      value: url
    });
    const branchInput = h('input', {
      type: 'text',
      class: 'jp-mod-styled jps-lab-input jps-lab-branch',
      name: 'repo_branch',
      placeholder: 'branch (default)',
      value: branch
    });
    const urlError = h('div', { class: 'jps-lab-field-error', role: 'alert', 'data-field': `repos.${i}.url` });
    const remove = h(
      'button',
      { type: 'button', class: 'jps-lab-icon-button', title: 'Remove this repository', 'aria-label': 'Remove repository' },
      '×'
    );
    const row = h(
      'div',
      { class: 'jps-lab-repo-row', 'data-index': String(i) },
      h('div', { class: 'jps-lab-inline' }, urlInput, branchInput, remove),
      urlError
    );
    remove.addEventListener('click', () => {
      row.remove();
      this._renumberRepos();
      this.validate();
    });
    this.repoRows.appendChild(row);
    this._renumberRepos();
  }

  private _renumberRepos(): void {
    [...this.fields.keys()].filter(k => k.startsWith('repos.')).forEach(k => this.fields.delete(k));
    [...this.repoRows.children].forEach((row, i) => {
      (row as HTMLElement).dataset.index = String(i);
      const err = row.querySelector<HTMLElement>('.jps-lab-field-error')!;
      err.dataset.field = `repos.${i}.url`;
      this.fields.set(`repos.${i}.url`, { row: row as HTMLElement, error: err });
      this.fields.set(`repos.${i}.branch`, { row: row as HTMLElement, error: err });
      this.fields.set(`repos.${i}`, { row: row as HTMLElement, error: err });
    });
  }

  /** Fill the pickers from the server (models of the workspace, workspaces, workflows). */
  async load(api: SessionsApi): Promise<void> {
    this.api = api;
    const [models, spaces, flows] = await Promise.all([
      api.models(),
      api.workspaces().catch(() => null),
      api.workflows().catch(() => null)
    ]);
    this.workspaces = spaces?.workspaces ?? [];
    this.workspace.replaceChildren(
      ...this.workspaces.map(w => h('option', { value: w.name, selected: w.primary }, w.name))
    );
    this.fields.get('workspace')!.row.style.display = this.workspaces.length > 1 ? '' : 'none';
    this.setModels(models.models, models.default_model);
    this.setWorkflows(flows);
    this._syncInactivity();
  }

  private async _changeWorkspace(): Promise<void> {
    if (!this.api) {
      return;
    }
    try {
      const models = await this.api.models(this.workspace.value);
      this.setModels(models.models, models.default_model);
      this._syncInactivity();
      this.validate();
    } catch (e: any) {
      this.showErrors({ workspace: e?.message ?? String(e) });
    }
  }

  setModels(models: ModelInfo[], serverDefault: string): void {
    const previous = this.model.value;
    this.models = models;
    const pick = [previous, this._defaultModel, serverDefault].find(id => id && models.some(m => m.id === id)) ?? models[0]?.id;
    this.model.replaceChildren(
      ...models.map(m =>
        h('option', { value: m.id, selected: m.id === pick }, m.label + (m.gated ? ' (preview)' : ''))
      )
    );
    if (pick) {
      this.model.value = pick;
    }
    this._syncModel(false);
  }

  setWorkflows(flows: WorkflowInfo[] | null): void {
    this.workflows = flows;
    if (flows === null) {
      // no /workflows on this server: free text only
      this.workflow.style.display = 'none';
      this.workflow.replaceChildren(h('option', { value: CUSTOM_WORKFLOW, selected: true }, 'Custom'));
      this.workflow.value = CUSTOM_WORKFLOW;
      this.workflowText.placeholder = 'Workflow: built-in name, server folder or git URL (optional)';
    } else {
      this.workflow.style.display = '';
      this.workflow.replaceChildren(
        h('option', { value: '' }, 'None'),
        ...flows
          .filter(f => f.enabled)
          .map(f => h('option', { value: f.source, title: f.description }, f.name + (f.kind !== 'builtin' ? ` (${f.kind})` : ''))),
        h('option', { value: CUSTOM_WORKFLOW }, 'Custom (folder or git URL)…')
      );
      this.workflow.value = '';
    }
    this._syncWorkflow();
  }

  get selectedModel(): ModelInfo | null {
    return this.models.find(m => m.id === this.model.value) ?? null;
  }

  private _syncModel(userChange: boolean): void {
    const m = this.selectedModel;
    if (!m) {
      this.modelHint.textContent = '';
      return;
    }
    const provider = { anthropic: 'Anthropic', gemini: 'Google Gemini', replay: 'recorded, offline' }[m.provider];
    this.modelHint.textContent = `${provider} · up to ${m.max_output_tokens.toLocaleString('en-US')} output tokens`;
    if (userChange || !this._thinkingSet) {
      this.thinking.checked = m.thinking_default;
    }
    this._syncThinking(false);
    this._syncTemperature();
  }

  private _thinkingSet = false;

  private _syncThinking(userChange: boolean): void {
    const m = this.selectedModel;
    if (userChange) {
      this._thinkingSet = true;
      // Claude thinks only at temperature 1: the UI sets it when thinking is switched on
      if (this.thinking.checked && m?.provider === 'anthropic') {
        this.temperature.value = '1';
        this._syncTemperature();
        this.touched.add('temperature');
      }
    }
    this.thinkingBudget.disabled = !this.thinking.checked;
    this.thinkingHint.textContent =
      m?.provider === 'anthropic'
        ? 'Claude: temperature 1, budget ≥ 1024 and below max tokens'
        : m?.thinking_default
          ? `${m.label} thinks by default`
          : '';
  }

  private _syncTemperature(): void {
    const t = Number(this.temperature.value);
    this.temperatureValue.textContent = t.toFixed(2);
    const m = this.selectedModel;
    const limit = m ? Math.min(2, m.max_temperature) : 2;
    this.temperatureLimit.textContent = m
      ? `0 = deterministic, 2 = most creative. ${m.label} accepts 0–${limit}.`
      : '0 = deterministic, 2 = most creative.';
    // shade the part of the track the provider refuses
    const pct = (limit / UI_LIMITS.temperature.max) * 100;
    this.temperature.style.setProperty('--jps-lab-limit', `${pct}%`);
    this.temperature.classList.toggle('jps-lab-over', t > limit + 1e-9);
  }

  private _syncInactivity(): void {
    const w = this.workspaces.find(x => x.name === this.workspace.value) ?? this.workspaces.find(x => x.primary);
    const dflt = w ? duration(w.inactivity_timeout) : '24 h';
    this.inactivity.placeholder = `default: ${dflt}`;
    this.inactivityHint.textContent = 'idle minutes before auto-stop; 0 = never';
  }

  private _syncWorkflow(): void {
    const custom = this.workflow.value === CUSTOM_WORKFLOW;
    this.workflowText.style.display = custom ? '' : 'none';
    const f = this.workflows?.find(x => x.source === this.workflow.value);
    this.workflowHint.textContent = f?.description ?? (this.workflows === null ? '' : custom ? '' : 'none: attach one later from the session');
  }

  /** Current raw values. */
  values(): FormValues {
    const wf = this.workflow.value === CUSTOM_WORKFLOW ? this.workflowText.value : this.workflow.value;
    return {
      display_name: this.name.value,
      workspace: this.workspaces.length > 1 ? this.workspace.value : '',
      model: this.model.value,
      temperature: Number(this.temperature.value),
      max_tokens: this.maxTokens.value,
      timeout: this.timeout.value,
      inactivity_minutes: this.inactivity.value,
      thinking: this.thinking.checked,
      thinking_budget: this.thinkingBudget.value,
      repos: [...this.repoRows.children].map(row => ({
        url: (row.querySelector('input[name="repo_url"]') as HTMLInputElement).value,
        branch: (row.querySelector('input[name="repo_branch"]') as HTMLInputElement).value
      })),
      workflow: wf,
      initial_prompt: this.prompt.value
    };
  }

  private _onInput(e: Event): void {
    const t = e.target as HTMLInputElement;
    if (t === this.temperature) {
      this._syncTemperature();
    }
    const key = this._keyOf(t);
    if (key) {
      this.touched.add(key);
    }
    this.validate();
  }

  private _keyOf(el: HTMLElement): string {
    const row = el.closest<HTMLElement>('.jps-lab-repo-row');
    if (row) {
      return `repos.${row.dataset.index}.${el.getAttribute('name') === 'repo_branch' ? 'branch' : 'url'}`;
    }
    const f = el.closest<HTMLElement>('.jps-lab-field');
    return f?.dataset.field ?? '';
  }

  /** Check the form; show errors of touched fields (all after a submit). */
  validate(): { spec: ReturnType<typeof validateForm>['spec']; errors: FieldErrors } {
    const result = validateForm(this.values(), this.selectedModel);
    const shown: FieldErrors = {};
    for (const [k, msg] of Object.entries(result.errors)) {
      if (this.showAll || this.touched.has(k) || (k === 'temperature' && this.touched.has('model'))) {
        shown[k] = msg;
      }
    }
    this.showErrors(shown, false);
    return result;
  }

  /** Put messages next to their fields; unknown fields go to the form-wide line. */
  showErrors(errors: FieldErrors, replaceFormError = true): void {
    for (const f of this.fields.values()) {
      f.error.textContent = '';
      f.row.classList.remove('jps-lab-invalid');
    }
    const known = new Set(this.fields.keys());
    const general: string[] = [];
    for (const [k, msg] of Object.entries(errors)) {
      const key = formFieldOf(k, known);
      const f = key ? this.fields.get(key) : undefined;
      if (f) {
        f.error.textContent = f.error.textContent ? `${f.error.textContent}; ${msg}` : msg;
        f.row.classList.add('jps-lab-invalid');
      } else {
        general.push(k && k !== 'body' ? `${k}: ${msg}` : msg);
      }
    }
    if (replaceFormError) {
      this.formError.textContent = general.join('; ');
    }
  }

  /** Server answer → field messages. */
  showApiError(e: unknown): void {
    if (e instanceof ApiError && e.fields.length) {
      const errs: FieldErrors = {};
      for (const f of e.fields) {
        errs[f.field] = errs[f.field] ? `${errs[f.field]}; ${f.message}` : f.message;
      }
      this.showErrors(errs);
      if (!this.formError.textContent && e.status !== 422) {
        this.formError.textContent = e.message;
      }
    } else {
      this.showErrors({});
      this.formError.textContent = (e as any)?.message ?? String(e);
    }
  }

  focusFirstError(): void {
    const row = this.node.querySelector<HTMLElement>('.jps-lab-invalid');
    row?.querySelector<HTMLElement>('input, select, textarea')?.focus();
  }
}

/**
 * Open the dialog; resolves to the created session, or null when cancelled.
 * `create` defaults to POST /sessions.
 */
export async function newSessionDialog(
  api: SessionsApi,
  defaults: SessionDefaults,
  create: (spec: any) => Promise<Session> = spec => api.create(spec)
): Promise<Session | null> {
  const form = new NewSessionForm(defaults);
  let created: Session | null = null;
  const modal = new Modal({
    title: 'New Session',
    body: form.node,
    acceptLabel: 'Create',
    className: 'jps-lab-new-session',
    onAccept: async () => {
      form.showAll = true;
      const { spec, errors } = form.validate();
      if (Object.keys(errors).length) {
        form.formError.textContent = 'Fix the fields marked in red.';
        form.focusFirstError();
        return false;
      }
      form.formError.textContent = '';
      modal.setBusy(true, 'Creating…');
      try {
        created = await create(spec);
        return true;
      } catch (e) {
        form.showApiError(e);
        form.focusFirstError();
        return false;
      } finally {
        modal.setBusy(false);
      }
    }
  });
  const opened = modal.open();
  form.node.addEventListener('keydown', e => {
    // Enter in a one-line input submits (not in the first-message box)
    if (e.key === 'Enter' && !e.shiftKey && (e.target as HTMLElement).tagName === 'INPUT') {
      e.preventDefault();
      void modal.accept();
    }
  });
  try {
    await form.load(api);
  } catch (e: any) {
    form.formError.textContent = `cannot load the models: ${e?.message ?? e}`;
  }
  const ok = await opened;
  return ok ? created : null;
}
