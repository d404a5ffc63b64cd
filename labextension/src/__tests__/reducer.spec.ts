/**
 * The event reducer of the shared chat module, as the side panel uses it: the same events always
 * fold to the same view, whatever way they arrive (once, twice, in overlapping batches after a
 * reconnect, or as merged deltas).
 */
import {
  Feed,
  answerOf,
  fold,
  pendingQuestion,
  reduce,
  createState,
  renderMarkdown,
  toolSummary
} from '@jupyter-sessions/chat';
import { transcript } from './fakes';

function shape(state: any): any[] {
  return state.items.map((it: any) => {
    const { key, kind } = it;
    const out: any = { key, kind };
    for (const f of ['text', 'status', 'streaming', 'name', 'args', 'result', 'phase', 'answers']) {
      if (it[f] !== undefined) {
        out[f] = it[f];
      }
    }
    return out;
  });
}

describe('chat.js reducer', () => {
  it('folds a transcript into messages, thinking, tools and a question', () => {
    const s = fold(transcript());
    expect(s.phase).toBe('Running');
    expect(s.agentState).toBe('waiting_input');
    expect(s.running).toBe(true);
    const kinds = s.items.map(i => i.kind);
    expect(kinds).toEqual(['phase', 'phase', 'phase', 'user', 'thinking', 'assistant', 'tool', 'question']);
    const user = s.byKey.get('u:u1')!;
    expect(user.status).toBe('delivered');
    expect(s.byKey.get('r:r1')!.text).toBe('A listing will do.');
    const a = s.byKey.get('a:a1')!;
    expect(a.text).toBe('Here is **bold** text.');
    expect(a.streaming).toBe(false);
    const tool = s.byKey.get('t:t1')!;
    expect(tool.args).toEqual({ command: 'ls -la' });
    expect(tool.status).toBe('done');
    expect(tool.result).toBe('README.md\n');
    expect(pendingQuestion(s)!.tool_call_id).toBe('q1');
    expect(s.lastSeq).toBe(transcript().length);
  });

  it('keeps a user message queued until it is delivered', () => {
    const s = createState();
    reduce(s, { seq: 1, type: 'USER_MESSAGE', data: { message_id: 'm', text: 'hi' } });
    expect(s.byKey.get('u:m')!.status).toBe('queued');
    const v = s.byKey.get('u:m')!.v;
    reduce(s, { seq: 2, type: 'MESSAGE_DELIVERED', data: { message_id: 'm' } });
    expect(s.byKey.get('u:m')!.status).toBe('delivered');
    expect(s.byKey.get('u:m')!.v).toBe(v + 1);
  });

  it('marks a streaming message until its end, and bumps v per delta', () => {
    const s = createState();
    reduce(s, { seq: 1, type: 'TEXT_MESSAGE_START', data: { messageId: 'x' } });
    reduce(s, { seq: 2, type: 'TEXT_MESSAGE_CONTENT', data: { messageId: 'x', delta: 'a' } });
    reduce(s, { seq: 3, type: 'TEXT_MESSAGE_CONTENT', data: { messageId: 'x', delta: 'b' } });
    const it = s.byKey.get('a:x')!;
    expect(it.streaming).toBe(true);
    expect(it.v).toBe(2);
    reduce(s, { seq: 4, type: 'TEXT_MESSAGE_END', data: { messageId: 'x' } });
    expect(it.streaming).toBe(false);
  });

  it('records answers and feedback on the items they belong to', () => {
    const evs = transcript();
    let seq = evs.length;
    evs.push({ seq: ++seq, type: 'QUESTION_ANSWERED', ts: '', data: { toolCallId: 'q1', answers: ['Go', ['Tests'], 'Ada'] } });
    evs.push({ seq: ++seq, type: 'FEEDBACK_RECORDED', ts: '', data: { message_id: 'a1', rating: 'up', comment: 'nice' } });
    const s = fold(evs);
    expect(pendingQuestion(s)).toBeNull();
    expect(s.byKey.get('q:q1')!.answers).toEqual(['Go', ['Tests'], 'Ada']);
    expect(s.byKey.get('a:a1')!.feedback).toEqual({ rating: 'up', comment: 'nice' });
  });

  it('ends a run on RUN_ERROR with a visible error item', () => {
    const s = fold([
      { seq: 1, type: 'RUN_STARTED' },
      { seq: 2, type: 'RUN_ERROR', data: { message: 'overloaded' } }
    ]);
    expect(s.running).toBe(false);
    expect(s.items[0]).toMatchObject({ kind: 'error', message: 'overloaded' });
  });

  it('ignores unknown event types', () => {
    const s = fold([{ seq: 1, type: 'SOMETHING_NEW', data: { x: 1 } }]);
    expect(s.items).toHaveLength(0);
    expect(s.lastSeq).toBe(1);
  });
});

describe('Feed: no duplicates, no gaps', () => {
  it('folds the same log the same way when events arrive twice or overlap', () => {
    const evs = transcript();
    const once = new Feed();
    once.push(evs);
    const twice = new Feed();
    twice.push(evs.slice(0, 12));
    twice.push(evs.slice(0, 12)); // a replay of the same batch
    twice.push(evs.slice(8)); // a reconnect that overlaps
    twice.push(evs); // the whole log again
    expect(shape(twice.state)).toEqual(shape(once.state));
    expect(twice.applied).toBe(evs.length);
    expect(twice.state.items.filter(i => i.kind === 'assistant')).toHaveLength(1);
  });

  it('applies only the new part of a merged delta (seq0..seq)', () => {
    const f = new Feed();
    f.push([
      { seq: 1, type: 'TEXT_MESSAGE_START', data: { messageId: 'm' } },
      { seq: 2, type: 'TEXT_MESSAGE_CONTENT', data: { messageId: 'm', delta: 'Hel' } }
    ]);
    // the log compacted deltas 2..4 into one event that kept seq0 = 2
    f.push([{ seq: 4, seq0: 2, type: 'TEXT_MESSAGE_CONTENT', data: { messageId: 'm', delta: 'Hello!' } }]);
    expect(f.state.byKey.get('a:m')!.text).toBe('Hello!');
    f.push([{ seq: 4, seq0: 2, type: 'TEXT_MESSAGE_CONTENT', data: { messageId: 'm', delta: 'Hello!' } }]);
    expect(f.state.byKey.get('a:m')!.text).toBe('Hello!');
  });
});

describe('helpers', () => {
  it('summarizes tool calls in one line', () => {
    expect(toolSummary('bash', { command: 'ls -la\necho hi' })).toBe('ls -la');
    expect(toolSummary('read_file', { path: 'a.py' })).toBe('a.py');
    expect(toolSummary('grep', { pattern: 'TODO', path: 'src' })).toBe('TODO in src');
    expect(toolSummary('unknown', {})).toBe('');
  });

  it('answerOf covers free text, single, Other and multi-select', () => {
    const empty = { choice: null, other: '', otherOn: false, multi: [] as string[], text: '' };
    expect(answerOf({ question: 'q', options: [] }, { ...empty, text: ' Ada ' })).toBe('Ada');
    expect(answerOf({ question: 'q', options: [] }, empty)).toBeNull();
    const opts = [{ label: 'A' }, { label: 'B' }];
    expect(answerOf({ question: 'q', options: opts }, { ...empty, choice: 'B' })).toBe('B');
    expect(answerOf({ question: 'q', options: opts }, { ...empty, otherOn: true, other: 'Zig' })).toBe('Zig');
    expect(answerOf({ question: 'q', options: opts, multiSelect: true }, { ...empty, multi: ['B', 'A'] })).toEqual(['A', 'B']);
  });

  it('renders Markdown without live HTML', () => {
    const host = document.createElement('div');
    host.appendChild(renderMarkdown('**b** <img src=x onerror=alert(1)> [x](javascript:alert(1)) [ok](https://e.org)'));
    expect(host.querySelector('strong')!.textContent).toBe('b');
    expect(host.querySelector('img')).toBeNull();
    expect([...host.querySelectorAll('a')].map(a => a.getAttribute('href'))).toEqual(['https://e.org']);
  });
});
