import { NewSessionForm, newSessionDialog, BUILTIN_DEFAULTS, CUSTOM_WORKFLOW } from '../dialog';
import { FakeServer, flush } from './fakes';

function errorOf(form: NewSessionForm, field: string): string {
  return form.fields.get(field)!.error.textContent ?? '';
}

function set(input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, value: string, type = 'input') {
  input.value = value;
  input.dispatchEvent(new Event(type, { bubbles: true }));
}

async function loaded(server = new FakeServer(), defaults = BUILTIN_DEFAULTS) {
  const form = new NewSessionForm(defaults);
  document.body.appendChild(form.node);
  await form.load(server.api);
  return { form, server };
}

afterEach(() => {
  document.body.replaceChildren();
});

describe('NewSessionForm', () => {
  it('offers every setting, with an auto-generated name placeholder', async () => {
    const { form } = await loaded();
    expect(form.name.placeholder).toMatch(/auto-generated/i);
    for (const key of ['display_name', 'model', 'temperature', 'max_tokens', 'timeout', 'inactivity_timeout', 'thinking.budget_tokens', 'repos', 'workflow', 'initial_prompt']) {
      expect(form.fields.has(key)).toBe(true);
    }
    // only the workspace's models, the server default picked
    expect([...form.model.options].map(o => o.value)).toEqual(['claude-sonnet-4-5', 'gemini-2.5-flash', 'replay']);
    expect(form.model.value).toBe('claude-sonnet-4-5');
    // slider 0–2, with the provider's own limit shown
    expect(form.temperature.min).toBe('0');
    expect(form.temperature.max).toBe('2');
    expect(form.temperatureLimit.textContent).toMatch(/Claude Sonnet 4.5 accepts 0–1/);
    expect(form.temperature.style.getPropertyValue('--jps-lab-limit')).toBe('50%');
    expect(form.maxTokens.min).toBe('100');
    expect(form.maxTokens.max).toBe('8000');
    expect(form.timeout.min).toBe('60');
    expect(form.timeout.max).toBe('1800');
    expect(form.inactivity.placeholder).toBe('default: 24 h');
    // one workspace: no picker
    expect(form.fields.get('workspace')!.row.style.display).toBe('none');
  });

  it('starts from the user defaults of the settings editor', async () => {
    const { form } = await loaded(new FakeServer(), { model: 'gemini-2.5-flash', temperature: 1.4, maxTokens: 2000, timeout: 600 });
    expect(form.model.value).toBe('gemini-2.5-flash');
    expect(form.temperature.value).toBe('1.4');
    expect(form.maxTokens.value).toBe('2000');
    expect(form.timeout.value).toBe('600');
    expect(form.thinking.checked).toBe(true); // Gemini thinks by default
    expect(form.temperatureLimit.textContent).toMatch(/accepts 0–2/);
  });

  it('shows a validation error next to the field once it is touched', async () => {
    const { form } = await loaded();
    set(form.maxTokens, '50');
    expect(errorOf(form, 'max_tokens')).toBe('max tokens must be between 100 and 8000');
    expect(form.fields.get('max_tokens')!.row.classList.contains('jps-lab-invalid')).toBe(true);
    expect(errorOf(form, 'timeout')).toBe('');
    set(form.maxTokens, '500');
    expect(errorOf(form, 'max_tokens')).toBe('');
  });

  it('flags a temperature over the provider limit, and fixes it for thinking', async () => {
    const { form } = await loaded();
    set(form.temperature, '1.5');
    expect(errorOf(form, 'temperature')).toMatch(/accepts temperature 0 to 1/);
    expect(form.temperature.classList.contains('jps-lab-over')).toBe(true);
    set(form.model, 'gemini-2.5-flash', 'change');
    expect(errorOf(form, 'temperature')).toBe('');
    set(form.model, 'claude-sonnet-4-5', 'change');
    form.thinking.checked = true;
    form.thinking.dispatchEvent(new Event('change', { bubbles: true }));
    expect(form.temperature.value).toBe('1'); // the UI sets 1 when thinking is switched on
    expect(errorOf(form, 'temperature')).toBe('');
    expect(form.validate().spec.thinking).toEqual({ enabled: true, budget_tokens: 2048 });
  });

  it('takes several repos (URL + branch) and removes rows', async () => {
    const { form } = await loaded();
    form.addRepoRow('https://h/a.git', 'main');
    form.addRepoRow('https://h/b.git');
    form.addRepoRow('', 'dev');
    form.showAll = true;
    const r = form.validate();
    expect(r.errors['repos.2.url']).toBeTruthy();
    expect(form.repoRows.children[2].querySelector('.jps-lab-field-error')!.textContent).toBeTruthy();
    (form.repoRows.children[2].querySelector('button') as HTMLButtonElement).click();
    expect(form.validate().spec.repos).toEqual([{ url: 'https://h/a.git', branch: 'main' }, { url: 'https://h/b.git' }]);
  });

  it('offers the workflows of GET /workflows, or a free-text field when the route is missing', async () => {
    const { form } = await loaded();
    expect([...form.workflow.options].map(o => o.value)).toEqual(['', 'bugfix', CUSTOM_WORKFLOW]);
    expect(form.workflowText.style.display).toBe('none');
    set(form.workflow, 'bugfix', 'change');
    expect(form.validate().spec.workflow).toBe('bugfix');
    set(form.workflow, CUSTOM_WORKFLOW, 'change');
    expect(form.workflowText.style.display).toBe('');

    const server = new FakeServer();
    server.workflows = null;
    const { form: f2 } = await loaded(server);
    expect(f2.workflow.style.display).toBe('none');
    expect(f2.workflowText.style.display).toBe('');
    set(f2.workflowText, 'triage');
    expect(f2.validate().spec.workflow).toBe('triage');
  });

  it("puts the API's 422 field errors next to their fields", async () => {
    const { form } = await loaded();
    form.addRepoRow('https://h/a.git');
    const { ApiError } = await import('../api');
    form.showApiError(
      new ApiError(422, 'invalid', [
        { field: 'workflow', message: "no built-in workflow 'x'" },
        { field: 'repos.0.url', message: 'bad url' },
        { field: 'body', message: 'two repos would share a folder' }
      ])
    );
    expect(errorOf(form, 'workflow')).toBe("no built-in workflow 'x'");
    expect(form.repoRows.children[0].querySelector('.jps-lab-field-error')!.textContent).toBe('bad url');
    expect(form.formError.textContent).toBe('two repos would share a folder');
  });
});

describe('newSessionDialog', () => {
  it('does not send an invalid form, shows server errors in place, then creates', async () => {
    const server = new FakeServer();
    let reject = true;
    server.on(c => {
      if (c.method === 'POST' && c.path === 'sessions' && reject) {
        reject = false;
        return { status: 422, body: { error: 'workflow: nope', detail: [{ field: 'workflow', message: "no built-in workflow 'nope'" }] } };
      }
      return undefined;
    });
    const done = newSessionDialog(server.api, BUILTIN_DEFAULTS);
    await flush(20);
    const modal = document.querySelector('.jps-lab-new-session') as HTMLElement;
    expect(modal).toBeTruthy();
    const q = <T extends Element>(sel: string) => modal.querySelector(sel) as unknown as T;
    set(q<HTMLInputElement>('input[name=max_tokens]'), '50');
    const create = q<HTMLButtonElement>('.jp-mod-accept');
    create.click();
    await flush(10);
    expect(server.calls.filter(c => c.method === 'POST')).toHaveLength(0);
    expect(q<HTMLElement>('.jps-lab-field[data-field=max_tokens] .jps-lab-field-error').textContent).toMatch(/100 and 8000/);

    set(q<HTMLInputElement>('input[name=max_tokens]'), '1000');
    set(q<HTMLSelectElement>('select[name=workflow]'), CUSTOM_WORKFLOW, 'change');
    set(q<HTMLInputElement>('input[name=workflow_text]'), 'nope');
    set(q<HTMLTextAreaElement>('textarea[name=initial_prompt]'), 'Fix the login bug');
    create.click();
    await flush(20);
    expect(document.body.contains(modal)).toBe(true);
    expect(q<HTMLElement>('.jps-lab-field[data-field=workflow] .jps-lab-field-error').textContent).toBe("no built-in workflow 'nope'");

    set(q<HTMLSelectElement>('select[name=workflow]'), '', 'change');
    create.click();
    const s = await done;
    expect(s!.id).toBe('s-1');
    expect(document.body.contains(modal)).toBe(false);
    const posted = server.calls.filter(c => c.method === 'POST').map(c => c.body);
    expect(posted[1]).toEqual({ model: 'claude-sonnet-4-5', temperature: 0.7, max_tokens: 1000, timeout: 300, initial_prompt: 'Fix the login bug' });
  });

  it('resolves null on Cancel or Escape', async () => {
    const server = new FakeServer();
    const done = newSessionDialog(server.api, BUILTIN_DEFAULTS);
    await flush(10);
    const modal = document.querySelector('.jps-lab-new-session') as HTMLElement;
    modal.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
    expect(await done).toBeNull();
    expect(server.calls.filter(c => c.method === 'POST')).toHaveLength(0);
  });
});
