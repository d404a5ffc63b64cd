/**
 * Types for the shared chat module, jupyter_sessions/static/chat.js (owned by the Python package:
 * the notebook widget and this side panel render a session with the same code). The bundler
 * resolves `@jupyter-sessions/chat` to that file (webpack.config.js; jest.config.js for tests).
 */
declare module '@jupyter-sessions/chat' {
  export const VERSION: string;

  export interface SessionEvent {
    seq: number;
    seq0?: number;
    type: string;
    ts?: string;
    data?: Record<string, any>;
  }

  export interface QuestionOption {
    label: string;
    description?: string;
  }

  export interface Question {
    question: string;
    header?: string;
    multiSelect?: boolean;
    options?: QuestionOption[];
  }

  export interface ChatItem {
    key: string;
    seq: number;
    v: number;
    kind:
      | 'user'
      | 'assistant'
      | 'thinking'
      | 'tool'
      | 'question'
      | 'phase'
      | 'notice'
      | 'error';
    [field: string]: any;
  }

  export interface ChatState {
    items: ChatItem[];
    byKey: Map<string, ChatItem>;
    args: Map<string, string>;
    phase: string | null;
    agentState: string | null;
    displayName: string | null;
    running: boolean;
    lastSeq: number;
  }

  export function createState(): ChatState;
  export function reduce(state: ChatState, ev: SessionEvent): ChatState;
  export function fold(events: SessionEvent[]): ChatState;
  export function pendingQuestion(state: ChatState): ChatItem | null;

  export class Feed {
    state: ChatState;
    applied: number;
    generation: number;
    reset(): void;
    push(events: SessionEvent[]): ChatState;
  }

  export function toolSummary(name: string, args: any): string;
  export function renderMarkdown(text: string): DocumentFragment;

  export interface UiState {
    open: Set<string>;
    showEarlier: boolean;
    draft: string;
    forms: Map<string, any>;
    feedback: Map<string, any>;
    error: string;
  }
  export function createUiState(): UiState;
  export function answerOf(q: Question, value: any): string | string[] | null;

  export interface ChatActions {
    send(text: string): Promise<unknown>;
    answer(toolCallId: string, answers: (string | string[] | null)[]): Promise<unknown>;
    stop(): Promise<unknown>;
    resume(): Promise<unknown>;
    feedback(messageId: string, rating: 'up' | 'down', comment?: string): Promise<unknown>;
  }

  export interface ChatMeta {
    session?: Record<string, any>;
    /** '', 'connecting', 'live', 'reconnecting…', 'closed' (deleted), 'error: …' */
    status?: string;
    startSeq?: number;
  }

  export interface ChatController {
    root: HTMLElement;
    update(state: ChatState, meta?: ChatMeta): void;
    showError(message: string): void;
    destroy(): void;
  }

  export function mount(
    el: HTMLElement,
    options: { actions: ChatActions; ui?: UiState; autoAdvanceMs?: number }
  ): ChatController;

  export function pageConfig(): Record<string, any> | null;
}
