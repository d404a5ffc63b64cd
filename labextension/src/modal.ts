/**
 * A modal that stays open while its action runs and shows errors in place (JupyterLab's own
 * Dialog resolves on any button, which does not suit a form the server may reject). Styled with
 * JupyterLab's jp-Dialog classes so it looks like the rest of Lab in every theme.
 */
import { h } from './dom';

export interface ModalOptions {
  title: string;
  body: HTMLElement;
  acceptLabel?: string;
  cancelLabel?: string;
  /** danger styling for the accept button (Delete) */
  warn?: boolean;
  className?: string;
  /** Runs on accept; resolve true to close, false to stay open. Errors stay open and show. */
  onAccept: () => Promise<boolean> | boolean;
}

export class Modal {
  readonly node: HTMLElement;
  readonly acceptButton: HTMLButtonElement;
  readonly cancelButton: HTMLButtonElement;
  readonly errorNode: HTMLElement;
  private _opts: ModalOptions;
  private _done: Promise<boolean>;
  private _resolve!: (accepted: boolean) => void;
  private _busy = false;
  private _restoreFocus: Element | null = null;

  constructor(opts: ModalOptions) {
    this._opts = opts;
    this._done = new Promise(r => (this._resolve = r));
    this.errorNode = h('div', { class: 'jps-lab-modal-error', role: 'alert' });
    this.cancelButton = h(
      'button',
      { class: 'jp-Dialog-button jp-mod-reject jp-mod-styled', type: 'button', onclick: () => this.close(false) },
      h('div', { class: 'jp-Dialog-buttonLabel' }, opts.cancelLabel ?? 'Cancel')
    );
    this.acceptButton = h(
      'button',
      {
        class: `jp-Dialog-button ${opts.warn ? 'jp-mod-warn' : 'jp-mod-accept'} jp-mod-styled`,
        type: 'button',
        onclick: () => void this.accept()
      },
      h('div', { class: 'jp-Dialog-buttonLabel' }, opts.acceptLabel ?? 'OK')
    );
    const content = h(
      'div',
      { class: 'jp-Dialog-content jps-lab-modal-content', role: 'dialog', 'aria-modal': 'true', 'aria-label': opts.title },
      h('div', { class: 'jp-Dialog-header' }, h('div', { class: 'jp-Dialog-title' }, opts.title)),
      h('div', { class: 'jp-Dialog-body jps-lab-modal-body' }, opts.body),
      h(
        'div',
        { class: 'jp-Dialog-footer jps-lab-modal-footer' },
        this.errorNode,
        h('div', { class: 'jp-Dialog-footerButtons' }, this.cancelButton, this.acceptButton)
      )
    );
    this.node = h('div', { class: `jp-Dialog jp-ThemedContainer jps-lab-modal ${opts.className ?? ''}` }, content);
    this.node.addEventListener('keydown', e => this._onKey(e));
    this.node.addEventListener('mousedown', e => {
      if (e.target === this.node) {
        e.preventDefault(); // a click on the backdrop does not close a form with typed data
      }
    });
  }

  /** Attach to the page; resolves true when accepted (and closed), false when cancelled. */
  open(): Promise<boolean> {
    this._restoreFocus = document.activeElement;
    document.body.appendChild(this.node);
    const first = this._opts.body.querySelector<HTMLElement>('input, select, textarea, button');
    setTimeout(() => (first ?? this.acceptButton).focus(), 0);
    return this._done;
  }

  get isOpen(): boolean {
    return this.node.isConnected;
  }

  setError(message: string): void {
    this.errorNode.textContent = message;
  }

  setBusy(busy: boolean, label?: string): void {
    this._busy = busy;
    this.acceptButton.disabled = busy;
    const lab = this.acceptButton.querySelector('.jp-Dialog-buttonLabel');
    if (lab) {
      lab.textContent = busy ? label ?? 'Working…' : this._opts.acceptLabel ?? 'OK';
    }
  }

  async accept(): Promise<void> {
    if (this._busy) {
      return;
    }
    this.setError('');
    let ok = false;
    try {
      ok = await this._opts.onAccept();
    } catch (e: any) {
      this.setError(e?.message ?? String(e));
      ok = false;
    }
    if (ok) {
      this.close(true);
    }
  }

  close(accepted: boolean): void {
    if (!this.node.isConnected) {
      return;
    }
    this.node.remove();
    this._resolve(accepted);
    if (this._restoreFocus instanceof HTMLElement && this._restoreFocus.isConnected) {
      this._restoreFocus.focus();
    }
  }

  private _onKey(e: KeyboardEvent): void {
    e.stopPropagation(); // keep JupyterLab's shortcuts out of the form
    if (e.key === 'Escape') {
      e.preventDefault();
      this.close(false);
    } else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void this.accept();
    } else if (e.key === 'Tab') {
      const focusable = [
        ...this.node.querySelectorAll<HTMLElement>('input, select, textarea, button, [tabindex]:not([tabindex="-1"])')
      ].filter(n => !(n as any).disabled && n.offsetParent !== null);
      if (focusable.length) {
        const first = focusable[0];
        const last = focusable[focusable.length - 1];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first.focus();
        }
      }
    }
  }
}

/** Ask a yes/no question; resolves true on accept. */
export function confirmModal(title: string, message: string | HTMLElement, acceptLabel: string, warn = false): Promise<boolean> {
  const body = typeof message === 'string' ? h('p', { class: 'jps-lab-modal-text' }, message) : message;
  return new Modal({ title, body, acceptLabel, warn, onAccept: () => true }).open();
}

/** The feedback modal: a rating plus an optional comment, sent by `send`. */
export function feedbackModal(
  rating: 'up' | 'down',
  send: (comment: string) => Promise<unknown>
): Promise<boolean> {
  const box = h('textarea', {
    class: 'jps-lab-feedback-comment',
    rows: '4',
    placeholder: rating === 'up' ? 'What went well? (optional)' : 'What could be improved? (optional)'
  });
  const body = h(
    'div',
    { class: 'jps-lab-feedback' },
    h(
      'p',
      { class: 'jps-lab-modal-text' },
      rating === 'up' ? 'You rated this response as helpful.' : 'You rated this response as not helpful.'
    ),
    h('label', { class: 'jps-lab-label' }, 'Comment', box)
  );
  const modal = new Modal({
    title: rating === 'up' ? 'Thumbs up' : 'Thumbs down',
    body,
    acceptLabel: 'Send feedback',
    className: 'jps-lab-feedback-modal',
    onAccept: async () => {
      modal.setBusy(true, 'Sending…');
      try {
        await send(box.value.trim());
        return true;
      } finally {
        modal.setBusy(false);
      }
    }
  });
  return modal.open();
}
