import { formFieldOf, repoFolder, validateForm, FormValues } from '../validate';
import { MODELS } from './fakes';

const claude = MODELS[0];
const gemini = MODELS[1];

function values(over: Partial<FormValues> = {}): FormValues {
  return {
    display_name: '',
    workspace: '',
    model: 'claude-sonnet-4-5',
    temperature: 0.7,
    max_tokens: '4000',
    timeout: '300',
    inactivity_minutes: '',
    thinking: false,
    thinking_budget: '2048',
    repos: [],
    workflow: '',
    initial_prompt: '',
    ...over
  };
}

describe('validateForm mirrors the API', () => {
  it('accepts the defaults and sends only what is set', () => {
    const { spec, errors } = validateForm(values(), claude);
    expect(errors).toEqual({});
    expect(spec).toEqual({ model: 'claude-sonnet-4-5', temperature: 0.7, max_tokens: 4000, timeout: 300 });
  });

  it('enforces the UI ranges: max tokens 100–8000, timeout 60–1800', () => {
    expect(validateForm(values({ max_tokens: '50' }), claude).errors.max_tokens).toMatch(/between 100 and 8000/);
    expect(validateForm(values({ max_tokens: '9000' }), claude).errors.max_tokens).toMatch(/between 100 and 8000/);
    expect(validateForm(values({ max_tokens: '12.5' }), claude).errors.max_tokens).toMatch(/whole number/);
    expect(validateForm(values({ timeout: '30' }), claude).errors.timeout).toMatch(/between 60 and 1800/);
    expect(validateForm(values({ timeout: '1801' }), claude).errors.timeout).toMatch(/between 60 and 1800/);
    expect(validateForm(values({ timeout: '1800', max_tokens: '100' }), claude).errors).toEqual({});
  });

  it("applies the provider's own temperature limit", () => {
    expect(validateForm(values({ temperature: 1.5 }), claude).errors.temperature).toBe(
      'Claude Sonnet 4.5 accepts temperature 0 to 1; got 1.5'
    );
    expect(validateForm(values({ temperature: 1.5, model: 'gemini-2.5-flash' }), gemini).errors).toEqual({});
    expect(validateForm(values({ temperature: 2.5 }), gemini).errors.temperature).toMatch(/between 0 and 2/);
  });

  it('checks the display name length', () => {
    expect(validateForm(values({ display_name: 'x'.repeat(101) }), claude).errors.display_name).toMatch(/at most 100/);
    expect(validateForm(values({ display_name: '  My run ' }), claude).spec.display_name).toBe('My run');
  });

  it('turns the inactivity timeout (minutes) into seconds; empty = workspace default', () => {
    expect(validateForm(values({ inactivity_minutes: '30' }), claude).spec.inactivity_timeout).toBe(1800);
    expect(validateForm(values({ inactivity_minutes: '0' }), claude).spec.inactivity_timeout).toBe(0);
    expect('inactivity_timeout' in validateForm(values(), claude).spec).toBe(false);
    expect(validateForm(values({ inactivity_minutes: '-1' }), claude).errors.inactivity_timeout).toBeTruthy();
  });

  it("knows Claude's thinking rules", () => {
    const on = { thinking: true, thinking_budget: '2048' };
    expect(validateForm(values(on), claude).errors.temperature).toMatch(/only at temperature 1/);
    expect(validateForm(values({ ...on, temperature: 1 }), claude).spec.thinking).toEqual({ enabled: true, budget_tokens: 2048 });
    expect(validateForm(values({ ...on, temperature: 1, thinking_budget: '512' }), claude).errors['thinking.budget_tokens']).toMatch(/at least 1024/);
    expect(validateForm(values({ ...on, temperature: 1, thinking_budget: '4000' }), claude).errors['thinking.budget_tokens']).toMatch(/smaller than max tokens/);
    // Gemini thinks by default: switching it off is sent
    expect(validateForm(values({ model: 'gemini-2.5-flash' }), gemini).spec.thinking).toEqual({ enabled: false, budget_tokens: 1024 });
  });

  it('checks repos like RepoSpec: URL, branch shape, folder clashes; ignores empty rows', () => {
    const r = (url: string, branch = '') => ({ url, branch });
    expect(validateForm(values({ repos: [r('', '')] }), claude).errors).toEqual({});
    expect(validateForm(values({ repos: [r('', 'main')] }), claude).errors['repos.0.url']).toBeTruthy();
    expect(validateForm(values({ repos: [r('--upload-pack=x')] }), claude).errors['repos.0.url']).toMatch(/cannot start with '-'/);
    expect(validateForm(values({ repos: [r('https://h/a.git', 'a..b')] }), claude).errors['repos.0.branch']).toMatch(/branch/);
    expect(validateForm(values({ repos: [r('https://h/x/a.git'), r('https://h/y/a')] }), claude).errors['repos.1.url']).toMatch(/folder a/);
    expect(validateForm(values({ repos: [r('https://h/a.git', 'dev')] }), claude).spec.repos).toEqual([{ url: 'https://h/a.git', branch: 'dev' }]);
  });

  it('derives the clone folder as the server does', () => {
    expect(repoFolder('https://github.com/org/My Repo.git/')).toBe('My-Repo');
    expect(repoFolder('git@host:org/tool.git')).toBe('tool');
    expect(repoFolder('/srv/repos/proj')).toBe('proj');
  });

  it('maps API field names onto form fields', () => {
    const known = new Set(['temperature', 'repos.0.url', 'thinking.budget_tokens', 'workflow']);
    expect(formFieldOf('temperature', known)).toBe('temperature');
    expect(formFieldOf('repos.0.url', known)).toBe('repos.0.url');
    expect(formFieldOf('thinking.budget_tokens', known)).toBe('thinking.budget_tokens');
    expect(formFieldOf('workflow.something', known)).toBe('workflow');
    expect(formFieldOf('body', known)).toBe('');
  });
});
