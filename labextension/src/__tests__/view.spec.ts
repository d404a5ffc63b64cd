import { Widget } from '@lumino/widgets';
import { SessionsModel } from '../model';
import { SessionView, sideInfo } from '../view';
import { FakeServer, FakeWebSocket, flush, session, transcript } from './fakes';

async function setup(over: any = {}) {
  const server = new FakeServer();
  server.sessions.set('s1', session('s1', { display_name: 'Demo', ...over }));
  const model = new SessionsModel(server.api);
  await model.refresh();
  FakeWebSocket.reset();
  const opened: string[] = [];
  const view = new SessionView({
    model,
    id: 's1',
    open: id => opened.push(id),
    stream: { WebSocket: FakeWebSocket as any, batchMs: 1, baseDelay: 5, window: null }
  });
  Widget.attach(view, document.body);
  const ws = FakeWebSocket.last;
  ws.open();
  return { server, model, view, ws, opened };
}

const q = <T extends Element = HTMLElement>(root: ParentNode, sel: string) => root.querySelector(sel) as unknown as T;
const click = (el: Element) => (el as HTMLElement).click();

afterEach(() => document.body.replaceChildren());

describe('SessionView', () => {
  it('renders the shared chat: markdown, thinking, tool block, tabbed question', async () => {
    const { view, ws } = await setup();
    ws.emit(...transcript());
    await flush(10);
    const root = view.node;
    expect(q(root, '.jps-chat')).toBeTruthy();
    expect(q(root, '.jps-assistant strong').textContent).toBe('bold');
    expect(q(root, '.jps-thinking')).toBeTruthy();
    expect(q(root, '.jps-tool .jps-tool-name').textContent).toBe('bash');
    expect(q(root, '.jps-tool .jps-tool-summary').textContent).toBe('ls -la');
    expect(root.querySelectorAll('.jps-question.jps-pending .jps-q-tab')).toHaveLength(3);
    expect(q(root, '.jps-q-counter').textContent).toBe('0 of 3 answered');
    expect(q(root, '.jps-header .jps-phase').textContent).toBe('Running');
    expect(q(root, '.jps-agent-state').textContent).toBe('waiting input');
    expect(q(root, '.jps-conn').textContent).toBe('live');
    expect(view.title.label).toBe('Demo');
    view.dispose();
  });

  it('answers a question through POST /answers', async () => {
    const { view, ws, server } = await setup();
    ws.emit(...transcript());
    await flush(10);
    const form = q(view.node, '.jps-question.jps-pending');
    click(q(form, 'input[value="Go"]'));
    // drive the remaining tabs through the form's own controls
    click(form.querySelectorAll('.jps-q-tab')[1]);
    click(q(view.node, '.jps-question.jps-pending input[value="CI"]'));
    click(q(view.node, '.jps-question.jps-pending').querySelectorAll('.jps-q-tab')[2]);
    const ta = q<HTMLTextAreaElement>(view.node, '.jps-question.jps-pending textarea.jps-q-free');
    ta.value = 'Ada';
    ta.dispatchEvent(new Event('input'));
    click(q(view.node, '.jps-q-submit'));
    await flush(20);
    const call = server.calls.find(c => c.path === 'sessions/s1/answers')!;
    expect(call.body).toEqual({ tool_call_id: 'q1', answers: ['Go', ['CI'], 'Ada'] });
    view.dispose();
  });

  it('sends messages, and shows them queued until delivered', async () => {
    const { view, ws, server } = await setup();
    ws.emit(...transcript().slice(0, 3));
    await flush(5);
    const box = q<HTMLTextAreaElement>(view.node, 'textarea.jps-input');
    box.value = 'also check the tests';
    box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    await flush(10);
    expect(server.calls.find(c => c.path === 'sessions/s1/messages')!.body).toEqual({ text: 'also check the tests' });
    ws.emit({ seq: 4, type: 'USER_MESSAGE', data: { message_id: 'm9', text: 'also check the tests' } });
    await flush(5);
    expect(q(view.node, '.jps-user .jps-queued').textContent).toBe('queued');
    ws.emit({ seq: 5, type: 'MESSAGE_DELIVERED', data: { message_id: 'm9' } });
    await flush(5);
    expect(q(view.node, '.jps-user .jps-queued')).toBeNull();
    view.dispose();
  });

  it('enables operations by phase (README table)', async () => {
    const { view, ws } = await setup();
    ws.emit(...transcript().slice(0, 3));
    await flush(5);
    const stop = q<HTMLButtonElement>(view.node, '.jps-stop');
    const resume = q<HTMLButtonElement>(view.node, '.jps-resume');
    expect(stop.disabled).toBe(false);
    expect(resume.disabled).toBe(true);
    expect(view.repoAdd.disabled).toBe(false);
    ws.emit({ seq: 4, type: 'PHASE_CHANGED', data: { phase: 'Stopping' } }, { seq: 5, type: 'PHASE_CHANGED', data: { phase: 'Stopped' } });
    await flush(5);
    expect(stop.disabled).toBe(true);
    expect(resume.disabled).toBe(false);
    expect(view.repoAdd.disabled).toBe(true);
    expect(view.repoHint.textContent).toMatch(/Resume/);
    expect(view.cloneButton.disabled).toBe(false);
    expect(view.deleteButton.disabled).toBe(false);
    expect(view.model.get('s1')!.phase).toBe('Stopped'); // the list learns it at once
    view.dispose();
  });

  it('stops and resumes through the chat header', async () => {
    const { view, ws, server } = await setup();
    ws.emit(...transcript().slice(0, 3));
    await flush(5);
    click(q(view.node, '.jps-stop'));
    await flush(10);
    expect(server.calls.some(c => c.path === 'sessions/s1/stop')).toBe(true);
    ws.emit({ seq: 4, type: 'PHASE_CHANGED', data: { phase: 'Stopped' } });
    await flush(5);
    click(q(view.node, '.jps-resume'));
    await flush(10);
    expect(server.calls.some(c => c.path === 'sessions/s1/resume')).toBe(true);
    view.dispose();
  });

  it('opens the feedback modal on a thumb and posts the rating with the comment', async () => {
    const { view, ws, server } = await setup();
    ws.emit(...transcript());
    await flush(10);
    click(q(view.node, '.jps-assistant .jps-thumb[data-rating=down]'));
    const modal = q(document.body, '.jps-lab-feedback-modal');
    expect(modal).toBeTruthy();
    expect(q(view.node, '.jps-feedback-box')).toBeNull(); // not the inline box
    const box = q<HTMLTextAreaElement>(modal, 'textarea');
    box.value = 'too verbose';
    click(q(modal, '.jp-mod-accept'));
    await flush(20);
    expect(server.calls.find(c => c.path === 'sessions/s1/feedback')!.body).toEqual({ message_id: 'a1', rating: 'down', comment: 'too verbose' });
    expect(document.body.contains(modal)).toBe(false);
    ws.emit({ seq: 30, type: 'FEEDBACK_RECORDED', data: { message_id: 'a1', rating: 'down' } });
    await flush(5);
    expect(q(view.node, '.jps-thumb.jps-on').dataset.rating).toBe('down');
    view.dispose();
  });

  it('renames, clones (and opens the copy), and deletes after confirmation', async () => {
    const { view, ws, server, opened, model } = await setup();
    ws.emit(...transcript().slice(0, 3));
    server.sessions.get('s1')!.last_seq = 3; // the server's row is at the log's last seq
    await flush(5);
    click(view.renameButton);
    await flush(5);
    const input = q<HTMLInputElement>(document.body, '.jps-lab-modal input[name=rename]');
    input.value = 'Renamed';
    click(q(document.body, '.jps-lab-modal .jp-mod-accept'));
    await flush(20);
    expect(server.calls.find(c => c.method === 'PATCH')!.body).toEqual({ display_name: 'Renamed' });
    expect(model.get('s1')!.display_name).toBe('Renamed');

    click(view.cloneButton);
    await flush(20);
    expect(opened).toEqual(['s1-copy']);

    let deleted = false;
    view.deleted.connect(() => (deleted = true));
    click(view.deleteButton);
    await flush(5);
    const confirm = q(document.body, '.jps-lab-modal');
    expect(confirm.textContent).toMatch(/Permanently delete “Renamed”/);
    click(q(confirm, '.jp-mod-reject'));
    await flush(5);
    expect(server.calls.some(c => c.method === 'DELETE')).toBe(false);
    click(view.deleteButton);
    await flush(5);
    click(q(document.body, '.jps-lab-modal .jp-mod-warn'));
    await flush(20);
    expect(server.calls.some(c => c.method === 'DELETE' && c.path === 'sessions/s1')).toBe(true);
    expect(deleted).toBe(true);
    expect(model.get('s1')).toBeUndefined();
    expect(q(view.node, '.jps-conn').textContent).toBe('deleted');
    view.dispose();
  });

  it('exports through GET /export and offers formats', async () => {
    const { view, server } = await setup();
    click(view.exportButton);
    const items = [...view.exportMenu.querySelectorAll('.jps-lab-menu-item')].map(b => b.textContent);
    expect(items.slice(0, 2)).toEqual(['Markdown (.md)', 'PDF (.pdf)']);
    const clicked: string[] = [];
    const orig = HTMLAnchorElement.prototype.click;
    HTMLAnchorElement.prototype.click = function (this: HTMLAnchorElement) {
      clicked.push(this.download);
    };
    click(view.exportMenu.querySelector('.jps-lab-menu-item')!);
    await flush(20);
    HTMLAnchorElement.prototype.click = orig;
    expect(server.calls.find(c => c.path === 'sessions/s1/export')!.query).toBe('?format=markdown');
    expect(clicked).toEqual(['My session.md']);
    view.dispose();
  });

  it('adds a repo while Running and shows clone results; checks the URL first', async () => {
    const { view, ws, server } = await setup();
    ws.emit(...transcript().slice(0, 3));
    await flush(5);
    view.repoUrl.value = '-bad';
    await view.addRepo();
    expect(view.repoError.textContent).toMatch(/cannot start with '-'/);
    expect(server.calls.some(c => c.path === 'sessions/s1/repos')).toBe(false);
    view.repoUrl.value = 'https://h/tool.git';
    view.repoBranch.value = 'main';
    await view.addRepo();
    expect(server.calls.find(c => c.path === 'sessions/s1/repos')!.body).toEqual({ url: 'https://h/tool.git', branch: 'main' });
    ws.emit({ seq: 4, type: 'REPO_CLONED', data: { url: 'https://h/tool.git', branch: 'main', commit: 'abcdef123456', path: '/workspace/repos/tool' } });
    await flush(80);
    const li = q(view.reposBody, '.jps-lab-repo');
    expect(li.className).toContain('jps-lab-repo-cloned');
    expect(li.textContent).toContain('https://h/tool.git @ main');
    expect(li.textContent).toContain('/workspace/repos/tool @ abcdef12');
    view.dispose();
  });

  it('attaches a workflow and shows the active one', async () => {
    const { view, ws, server } = await setup();
    ws.emit(...transcript().slice(0, 3));
    await flush(60);
    expect([...view.workflowPick.options].map(o => o.value)).toEqual(['', 'bugfix', '__custom__']);
    view.workflowPick.value = 'bugfix';
    await view.attachWorkflow();
    expect(server.calls.find(c => c.path === 'sessions/s1/workflow')!.body).toEqual({ workflow: 'bugfix' });
    ws.emit({ seq: 4, type: 'WORKFLOW_ATTACHED', data: { name: 'Bug fix', source: 'bugfix', description: 'Reproduce, fix, test', commands: ['fix'] } });
    await flush(80);
    expect(view.workflowBody.textContent).toContain('Bug fix');
    expect(view.workflowBody.textContent).toContain('/fix');
    view.dispose();
  });
});

describe('sideInfo', () => {
  it('folds repo and workflow events over the spec', () => {
    const s = session('x', { spec: { ...session('x').spec, repos: [{ url: 'https://h/a.git' }, { url: '/srv/b' }], workflow: 'triage' } });
    const info = sideInfo(s, [
      { seq: 1, type: 'REPO_CLONED', data: { url: 'https://h/a.git', branch: 'main', path: '/workspace/repos/a' } },
      { seq: 2, type: 'REPO_CLONE_FAILED', data: { url: '/srv/b', error: 'not a git repository' } },
      { seq: 3, type: 'WORKFLOW_FAILED', data: { source: 'triage', error: 'boom' } }
    ]);
    expect(info.repos.map(r => [r.url, r.state])).toEqual([
      ['https://h/a.git', 'cloned'],
      ['/srv/b', 'failed']
    ]);
    expect(info.repos[1].detail).toBe('not a git repository');
    expect(info.workflow).toMatchObject({ name: 'triage', error: 'boom' });
  });
});

describe('SessionView when the session disappears', () => {
  it('says deleted and signals when the server closes the stream', async () => {
    const { view, ws } = await setup();
    ws.emit(...transcript().slice(0, 3));
    let deleted = 0;
    view.deleted.connect(() => deleted++);
    ws.drop(1000, 'session deleted');
    await flush(10);
    expect(deleted).toBe(1);
    expect(q(view.node, '.jps-conn').textContent).toBe('deleted');
    expect(q<HTMLTextAreaElement>(view.node, 'textarea.jps-input').disabled).toBe(true);
    expect(view.deleteButton.disabled).toBe(true);
    view.dispose();
  });
});
