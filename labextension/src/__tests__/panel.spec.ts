import { Widget } from '@lumino/widgets';
import { SessionsModel } from '../model';
import { SessionsPanel, matches } from '../panel';
import { age } from '../dom';
import { FakeServer, session } from './fakes';

function setup() {
  const server = new FakeServer();
  const old = new Date(Date.now() - 3 * 3600_000).toISOString();
  server.sessions.set('a', session('a', { display_name: 'Fix login bug', phase: 'Running', agent_state: 'working' }));
  server.sessions.set('b', session('b', { display_name: 'Write the spec', phase: 'Stopped', agent_state: null, created: old, spec: { ...session('b').spec, model: 'gemini-2.5-flash' } }));
  const model = new SessionsModel(server.api);
  const opened: string[] = [];
  let created = 0;
  const panel = new SessionsPanel({ model, open: id => opened.push(id), create: () => created++, fastPoll: 60_000, slowPoll: 60_000 });
  Widget.attach(panel, document.body);
  return { server, model, panel, opened, created: () => created };
}

afterEach(() => document.body.replaceChildren());

describe('SessionsPanel', () => {
  it('lists name, model, phase, agent-state badge and age, newest first', async () => {
    const { model, panel } = setup();
    await model.refresh();
    const items = [...panel.list.querySelectorAll('.jps-lab-item')] as HTMLElement[];
    expect(items.map(i => i.dataset.id)).toEqual(['a', 'b']);
    const a = items[0];
    expect(a.querySelector('.jps-lab-item-name')!.textContent).toBe('Fix login bug');
    expect(a.querySelector('.jps-lab-item-model')!.textContent).toBe('claude-sonnet-4-5');
    expect(a.querySelector('.jps-phase')!.textContent).toBe('Running');
    expect(a.querySelector('.jps-agent-state')!.textContent).toBe('working');
    expect(a.querySelector('.jps-lab-item-age')!.textContent).toBe('5 min ago');
    // no agent state outside Running
    expect(items[1].querySelector('.jps-agent-state')).toBeNull();
    expect(items[1].querySelector('.jps-lab-item-age')!.textContent).toBe('3 h ago');
    panel.dispose();
    model.dispose();
  });

  it('filters by name, model or phase', async () => {
    const { model, panel } = setup();
    await model.refresh();
    panel.filter.value = 'gemini';
    panel.filter.dispatchEvent(new Event('input'));
    expect([...panel.list.children].map(i => (i as HTMLElement).dataset.id)).toEqual(['b']);
    panel.filter.value = 'running login';
    panel.filter.dispatchEvent(new Event('input'));
    expect([...panel.list.children].map(i => (i as HTMLElement).dataset.id)).toEqual(['a']);
    panel.filter.value = 'nothing-like-this';
    panel.filter.dispatchEvent(new Event('input'));
    expect(panel.list.children).toHaveLength(0);
    expect(panel.status.textContent).toMatch(/No session matches/);
    expect(matches(session('x', { agent_state: 'waiting_input' }), 'waiting input')).toBe(true);
    panel.dispose();
    model.dispose();
  });

  it('updates live from stream events and refreshes', async () => {
    const { server, model, panel } = setup();
    await model.refresh();
    model.applyEvent('a', { seq: 5, type: 'AGENT_STATE_CHANGED', data: { state: 'waiting_input' } });
    expect(panel.list.querySelector('[data-id=a] .jps-agent-state')!.textContent).toBe('waiting input');
    model.applyEvent('a', { seq: 6, type: 'PHASE_CHANGED', data: { phase: 'Stopping', reason: 'stopped by the user' } });
    expect(panel.list.querySelector('[data-id=a] .jps-phase')!.textContent).toBe('Stopping');
    expect(panel.list.querySelector('[data-id=a] .jps-agent-state')).toBeNull();
    model.applyEvent('a', { seq: 4, type: 'PHASE_CHANGED', data: { phase: 'Running' } }); // older: ignored
    expect(panel.list.querySelector('[data-id=a] .jps-phase')!.textContent).toBe('Stopping');
    server.sessions.set('c', session('c', { display_name: 'From another tab', created: new Date().toISOString() }));
    await model.refresh();
    expect((panel.list.firstElementChild as HTMLElement).dataset.id).toBe('c');
    expect(panel.list.querySelector('[data-id=c] .jps-lab-item-age')!.textContent).toBe('just now');
    panel.dispose();
    model.dispose();
  });

  it('opens on click and Enter; New Session calls create', async () => {
    const { model, panel, opened, created } = setup();
    await model.refresh();
    (panel.list.querySelector('[data-id=b]') as HTMLElement).click();
    panel.list.querySelector('[data-id=a]')!.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    expect(opened).toEqual(['b', 'a']);
    (panel.node.querySelector('.jps-lab-new') as HTMLButtonElement).click();
    expect(created()).toBe(1);
    panel.selected = 'b';
    expect(panel.list.querySelector('[data-id=b]')!.classList.contains('jp-mod-selected')).toBe(true);
    panel.dispose();
    model.dispose();
  });

  it('shows an empty state and list errors', async () => {
    const server = new FakeServer();
    const model = new SessionsModel(server.api);
    const panel = new SessionsPanel({ model, open: () => undefined, create: () => undefined, fastPoll: 60_000, slowPoll: 60_000 });
    await model.refresh();
    expect(panel.status.textContent).toMatch(/No sessions yet/);
    server.on(c => (c.path === 'sessions' ? { status: 500, body: { error: 'internal error' } } : undefined));
    await model.refresh();
    expect(panel.status.textContent).toBe('Cannot list sessions: internal error');
    panel.dispose();
    model.dispose();
  });
});

describe('age', () => {
  it('reads server UTC times', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    expect(age('2026-01-01T11:59:50', now)).toBe('just now');
    expect(age('2026-01-01T11:30:00Z', now)).toBe('30 min ago');
    expect(age('2025-12-30T12:00:00+00:00', now)).toBe('2 d ago');
    expect(age(null, now)).toBe('');
  });
});
