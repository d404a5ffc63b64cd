/**
 * jupyter-sessions JupyterLab extension: the Agent Sessions side panel, the New Session dialog,
 * session views in the main area, commands and user settings.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, WidgetTracker } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { SessionsApi } from './api';
import { BUILTIN_DEFAULTS, newSessionDialog, SessionDefaults } from './dialog';
import { SessionsModel } from './model';
import { SessionsPanel } from './panel';
import { SessionView } from './view';

export const PLUGIN_ID = 'jupyter-sessions:plugin';

export namespace CommandIDs {
  export const openPanel = 'jupyter-sessions:open-panel';
  export const create = 'jupyter-sessions:new';
  export const open = 'jupyter-sessions:open';
  export const refresh = 'jupyter-sessions:refresh';
  export const stop = 'jupyter-sessions:stop';
  export const resume = 'jupyter-sessions:resume';
  export const clone = 'jupyter-sessions:clone';
  export const rename = 'jupyter-sessions:rename';
  export const remove = 'jupyter-sessions:delete';
  export const exportMarkdown = 'jupyter-sessions:export-markdown';
  export const exportPdf = 'jupyter-sessions:export-pdf';
}

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
<path class="jp-icon3" fill="#616161" d="M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm0 2v10h2v1.9L8.4 15H20V5H4zm3 3h2v2H7V8zm4 0h2v2h-2V8zm4 0h2v2h-2V8z"/>
</svg>`;

export const sessionsIcon = new LabIcon({ name: 'jupyter-sessions:sessions', svgstr: ICON_SVG });

/** Read the user's defaults (settings editor) into SessionDefaults. */
export function defaultsFrom(settings: ISettingRegistry.ISettings | null): SessionDefaults {
  if (!settings) {
    return { ...BUILTIN_DEFAULTS };
  }
  const get = <T>(key: string, dflt: T): T => {
    const v = settings.get(key).composite as unknown;
    return v === undefined || v === null ? dflt : (v as T);
  };
  return {
    model: get('defaultModel', BUILTIN_DEFAULTS.model),
    temperature: get('temperature', BUILTIN_DEFAULTS.temperature),
    maxTokens: get('maxTokens', BUILTIN_DEFAULTS.maxTokens),
    timeout: get('timeout', BUILTIN_DEFAULTS.timeout)
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Agent sessions (Claude, Gemini) with their own sandbox: side panel, chat and operations.',
  autoStart: true,
  requires: [],
  optional: [ILabShell, ILayoutRestorer, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const api = new SessionsApi(app.serviceManager.serverSettings);
    const model = new SessionsModel(api);
    let settings: ISettingRegistry.ISettings | null = null;
    let pollMs = 3000;

    const tracker = new WidgetTracker<SessionView>({ namespace: 'jupyter-sessions' });

    const current = (): SessionView | null => {
      const w = app.shell.currentWidget;
      if (w instanceof SessionView) {
        return w;
      }
      return tracker.currentWidget;
    };

    const openSession = (id: string): SessionView => {
      const found = tracker.find(w => w.sessionId === id);
      if (found) {
        app.shell.activateById(found.id);
        return found;
      }
      const view = new SessionView({ model, id, open: openSession });
      view.title.icon = sessionsIcon;
      view.deleted.connect(() => {
        // keep the view open a moment (it says "deleted"), then close it
        setTimeout(() => view.dispose(), 1500);
      });
      void tracker.add(view);
      app.shell.add(view, 'main');
      app.shell.activateById(view.id);
      return view;
    };

    const create = async (): Promise<void> => {
      const s = await newSessionDialog(api, defaultsFrom(settings));
      if (s) {
        model.upsert(s);
        openSession(s.id);
      }
    };

    const panel = new SessionsPanel({
      model,
      open: id => void openSession(id),
      create: () => void create(),
      fastPoll: pollMs
    });
    panel.title.icon = sessionsIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'jupyter-sessions-panel');
    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.open,
        args: w => ({ id: w.sessionId }),
        name: w => w.sessionId
      });
    }
    tracker.currentChanged.connect(() => {
      panel.selected = tracker.currentWidget?.sessionId ?? '';
    });
    labShell?.currentChanged.connect(() => {
      const w = labShell.currentWidget;
      panel.selected = w instanceof SessionView ? w.sessionId : '';
    });

    const { commands } = app;
    const hasCurrent = () => !!current() && !current()!.isDisposed;
    const phaseIs = (...phases: string[]) => {
      const v = current();
      return !!v && phases.includes(v.phase);
    };

    commands.addCommand(CommandIDs.openPanel, {
      label: 'Show Agent Sessions',
      caption: 'Open the Agent Sessions side panel',
      icon: sessionsIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    commands.addCommand(CommandIDs.create, {
      label: 'New Agent Session…',
      caption: 'Create an agent session (model, repos, workflow, first message)',
      execute: () => create()
    });
    commands.addCommand(CommandIDs.open, {
      label: args => (args.id ? `Open Agent Session ${args.id}` : 'Open Agent Session'),
      execute: args => {
        const id = String(args.id ?? '');
        if (id) {
          openSession(id);
        }
      }
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Agent Sessions',
      execute: () => model.refresh()
    });
    commands.addCommand(CommandIDs.stop, {
      label: 'Stop Agent Session',
      isEnabled: () => phaseIs('Pending', 'Creating', 'Running'),
      execute: async () => {
        const v = current();
        if (v) {
          model.upsert(await api.stop(v.sessionId));
        }
      }
    });
    commands.addCommand(CommandIDs.resume, {
      label: 'Resume Agent Session',
      isEnabled: () => phaseIs('Stopped', 'Completed', 'Failed'),
      execute: async () => {
        const v = current();
        if (v) {
          model.upsert(await api.resume(v.sessionId));
        }
      }
    });
    commands.addCommand(CommandIDs.clone, {
      label: 'Clone Agent Session',
      isEnabled: hasCurrent,
      execute: () => current()?.clone()
    });
    commands.addCommand(CommandIDs.rename, {
      label: 'Rename Agent Session…',
      isEnabled: hasCurrent,
      execute: () => current()?.rename()
    });
    commands.addCommand(CommandIDs.remove, {
      label: 'Delete Agent Session…',
      isEnabled: hasCurrent,
      execute: () => current()?.remove()
    });
    commands.addCommand(CommandIDs.exportMarkdown, {
      label: 'Export Agent Session as Markdown',
      isEnabled: hasCurrent,
      execute: () => current()?.exportAs('markdown')
    });
    commands.addCommand(CommandIDs.exportPdf, {
      label: 'Export Agent Session as PDF',
      isEnabled: hasCurrent,
      execute: () => current()?.exportAs('pdf')
    });
    if (palette) {
      const category = 'Agent Sessions';
      for (const command of Object.values(CommandIDs)) {
        if (command !== CommandIDs.open) {
          palette.addItem({ command, category });
        }
      }
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(s => {
          settings = s;
          const apply = () => {
            const ms = Number(s.get('pollInterval').composite ?? 3);
            pollMs = Math.max(1, ms) * 1000;
            panel.fastPoll = pollMs;
            if (panel.isVisible) {
              model.poll(pollMs);
            }
          };
          apply();
          s.changed.connect(apply);
        })
        .catch(reason => console.warn('jupyter-sessions: cannot load settings', reason));
    }

    void model.refresh();
    model.watch(); // live list; polling (pollInterval) only while the watch is down
    // the test harness and curious users can reach the pieces
    (app as any).jupyterSessions = { api, model, tracker, panel, openSession, create };
    console.debug('jupyter-sessions: the side panel is active');
  }
};

export default plugin;
