/**
 * Client-side checks of the New Session form. They mirror the API (models.py SessionSpec and
 * catalogue.validate_spec) plus the UI ranges of the spec (max tokens 100–8000, timeout
 * 60–1800 s), and use the API's field names so that server 422s land next to the same fields.
 */
import type { ModelInfo, RepoSpec, SessionSpec } from './api';

/** Ranges the UI enforces (the API accepts more). */
export const UI_LIMITS = {
  temperature: { min: 0, max: 2, step: 0.05 },
  max_tokens: { min: 100, max: 8000 },
  timeout: { min: 60, max: 1800 },
  display_name: { max: 100 },
  thinking_budget: { min: 1024 },
  initial_prompt: { max: 200_000 },
  workflow: { max: 2000 },
  repo_url: { max: 2000 },
  repos: { max: 20 }
};

export interface RepoRow {
  url: string;
  branch: string;
}

/** The raw values of the form (text inputs stay strings until checked). */
export interface FormValues {
  display_name: string;
  workspace: string;
  model: string;
  temperature: number;
  max_tokens: string;
  timeout: string;
  /** minutes; empty = the workspace's setting, 0 = never */
  inactivity_minutes: string;
  thinking: boolean;
  thinking_budget: string;
  repos: RepoRow[];
  workflow: string;
  initial_prompt: string;
}

export type FieldErrors = Record<string, string>;

const BRANCH_RE = /^[A-Za-z0-9._/@+-]{1,200}$/;
const INT_RE = /^\s*\d+\s*$/;

function intField(
  raw: string,
  field: string,
  errors: FieldErrors,
  min: number,
  max: number,
  what: string
): number | undefined {
  if (!INT_RE.test(raw)) {
    errors[field] = `${what} must be a whole number between ${min} and ${max}`;
    return undefined;
  }
  const n = parseInt(raw, 10);
  if (n < min || n > max) {
    errors[field] = `${what} must be between ${min} and ${max}`;
    return undefined;
  }
  return n;
}

/** The folder a repo is cloned into (RepoSpec.folder in models.py). */
export function repoFolder(url: string): string {
  let tail = url.replace(/\/+$/, '');
  tail = tail.slice(tail.lastIndexOf('/') + 1);
  tail = tail.slice(tail.lastIndexOf(':') + 1);
  if (tail.endsWith('.git')) {
    tail = tail.slice(0, -4);
  }
  tail = tail.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[.-]+|[.-]+$/g, '');
  return (tail || 'repo').slice(0, 100);
}

export function checkRepo(repo: RepoRow, prefix: string, errors: FieldErrors): RepoSpec | null {
  const url = repo.url.trim();
  const branch = repo.branch.trim();
  if (!url) {
    errors[`${prefix}.url`] = 'give a git URL or a server path (or remove this row)';
    return null;
  }
  if (url.length > UI_LIMITS.repo_url.max) {
    errors[`${prefix}.url`] = `at most ${UI_LIMITS.repo_url.max} characters`;
    return null;
  }
  if (url.startsWith('-')) {
    errors[`${prefix}.url`] = "a repository URL cannot start with '-'";
    return null;
  }
  if (/[\n\r\0]/.test(url)) {
    errors[`${prefix}.url`] = 'a repository URL cannot contain control characters';
    return null;
  }
  if (branch && (branch.startsWith('-') || branch.includes('..') || !BRANCH_RE.test(branch))) {
    errors[`${prefix}.branch`] = "not a valid branch name (letters, digits, . _ / @ + - and no '..')";
    return null;
  }
  return branch ? { url, branch } : { url };
}

/**
 * Check the form; returns the request body (only what differs from "not given") and the errors
 * keyed by API field name. `model` is the chosen model's catalogue entry, when known.
 */
export function validateForm(
  v: FormValues,
  model?: ModelInfo | null
): { spec: SessionSpec; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const spec: SessionSpec = {};

  const name = v.display_name.trim();
  if (name.length > UI_LIMITS.display_name.max) {
    errors.display_name = `at most ${UI_LIMITS.display_name.max} characters (${name.length} now)`;
  } else if (name) {
    spec.display_name = name;
  }

  if (v.workspace) {
    spec.workspace = v.workspace;
  }
  if (!v.model) {
    errors.model = 'choose a model';
  } else {
    spec.model = v.model;
  }

  const t = Number(v.temperature);
  const tMax = Math.min(UI_LIMITS.temperature.max, model ? model.max_temperature : UI_LIMITS.temperature.max);
  if (!Number.isFinite(t) || t < 0 || t > UI_LIMITS.temperature.max) {
    errors.temperature = 'temperature must be between 0 and 2';
  } else if (t > tMax + 1e-9) {
    errors.temperature = `${model?.label ?? 'this model'} accepts temperature 0 to ${tMax}; got ${t}`;
  } else {
    spec.temperature = Math.round(t * 100) / 100;
  }

  const maxTokens = intField(
    v.max_tokens,
    'max_tokens',
    errors,
    UI_LIMITS.max_tokens.min,
    UI_LIMITS.max_tokens.max,
    'max tokens'
  );
  if (maxTokens !== undefined) {
    if (model && maxTokens > model.max_output_tokens) {
      errors.max_tokens = `${model.label} writes at most ${model.max_output_tokens} tokens per response`;
    } else {
      spec.max_tokens = maxTokens;
    }
  }

  const timeout = intField(v.timeout, 'timeout', errors, UI_LIMITS.timeout.min, UI_LIMITS.timeout.max, 'timeout');
  if (timeout !== undefined) {
    spec.timeout = timeout;
  }

  const idle = v.inactivity_minutes.trim();
  if (idle) {
    if (!/^\d+(\.\d+)?$/.test(idle)) {
      errors.inactivity_timeout = 'minutes as a number (0 = never); leave empty for the workspace setting';
    } else {
      spec.inactivity_timeout = Math.round(parseFloat(idle) * 60);
    }
  }

  if (v.thinking) {
    const budget = intField(v.thinking_budget, 'thinking.budget_tokens', errors, 1, 1_000_000, 'thinking budget');
    if (budget !== undefined) {
      if (model?.provider === 'anthropic' && budget < UI_LIMITS.thinking_budget.min) {
        errors['thinking.budget_tokens'] = 'Claude needs a thinking budget of at least 1024 tokens';
      } else if (model?.provider === 'anthropic' && maxTokens !== undefined && budget >= maxTokens) {
        errors['thinking.budget_tokens'] = 'the thinking budget must be smaller than max tokens';
      } else {
        spec.thinking = { enabled: true, budget_tokens: budget };
      }
    }
    if (model?.provider === 'anthropic' && t !== 1 && !errors.temperature) {
      errors.temperature =
        'Claude allows extended thinking only at temperature 1; set temperature to 1 or turn thinking off';
    }
  } else if (model && model.thinking_default) {
    if (model.id === 'gemini-2.5-pro') {
      errors['thinking.enabled'] = `${model.label} always thinks; leave thinking on`;
    } else {
      spec.thinking = { enabled: false, budget_tokens: 1024 };
    }
  }

  const repos: RepoSpec[] = [];
  const folders = new Map<string, number>();
  v.repos.forEach((row, i) => {
    if (!row.url.trim() && !row.branch.trim()) {
      return; // an empty row is ignored
    }
    const r = checkRepo(row, `repos.${i}`, errors);
    if (r) {
      const folder = repoFolder(r.url);
      if (folders.has(folder)) {
        errors[`repos.${i}.url`] = `two repos would share the folder ${folder}`;
      }
      folders.set(folder, i);
      repos.push(r);
    }
  });
  if (repos.length > UI_LIMITS.repos.max) {
    errors.repos = `at most ${UI_LIMITS.repos.max} repositories`;
  }
  if (repos.length) {
    spec.repos = repos;
  }

  const wf = v.workflow.trim();
  if (wf.length > UI_LIMITS.workflow.max) {
    errors.workflow = `at most ${UI_LIMITS.workflow.max} characters`;
  } else if (wf.startsWith('-')) {
    errors.workflow = "a workflow cannot start with '-'";
  } else if (wf) {
    spec.workflow = wf;
  }

  const prompt = v.initial_prompt.trim();
  if (prompt.length > UI_LIMITS.initial_prompt.max) {
    errors.initial_prompt = `at most ${UI_LIMITS.initial_prompt.max} characters`;
  } else if (prompt) {
    spec.initial_prompt = prompt;
  }

  return { spec, errors };
}

/**
 * Where a server field error goes in the form: the API's dotted field (`repos.0.url`,
 * `thinking.budget_tokens`, `body`) → a key of the form, or '' for the form-wide message.
 */
export function formFieldOf(apiField: string, known: Set<string>): string {
  if (known.has(apiField)) {
    return apiField;
  }
  const parts = apiField.split('.');
  while (parts.length > 1) {
    parts.pop();
    const k = parts.join('.');
    if (known.has(k)) {
      return k;
    }
  }
  return '';
}
