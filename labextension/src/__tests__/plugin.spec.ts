import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';
import plugin, { CommandIDs, defaultsFrom } from '../index';
import { SessionsPanel } from '../panel';
import { FakeServer, flush, session } from './fakes';

describe('the plugin', () => {
  it('adds the panel to the left area and its commands to the palette', async () => {
    const server = new FakeServer();
    server.sessions.set('a', session('a'));
    const added: { widget: Widget; area: string }[] = [];
    const palette: string[] = [];
    const commands = new CommandRegistry();
    const app: any = {
      commands,
      serviceManager: { serverSettings: server.api.serverSettings },
      shell: {
        add: (widget: Widget, area: string) => {
          added.push({ widget, area });
          Widget.attach(widget, document.body);
        },
        activateById: () => undefined,
        currentWidget: null
      }
    };
    plugin.activate(app, null, null, { addItem: (i: any) => palette.push(i.command) } as any, null);
    expect(plugin.id).toBe('jupyter-sessions:plugin');
    expect(added).toHaveLength(1);
    expect(added[0].area).toBe('left');
    expect(added[0].widget).toBeInstanceOf(SessionsPanel);
    for (const id of [CommandIDs.create, CommandIDs.openPanel, CommandIDs.stop, CommandIDs.resume, CommandIDs.clone, CommandIDs.remove, CommandIDs.rename, CommandIDs.exportMarkdown, CommandIDs.exportPdf]) {
      expect(commands.hasCommand(id)).toBe(true);
      expect(palette).toContain(id);
    }
    expect(palette).not.toContain(CommandIDs.open);
    expect(commands.isEnabled(CommandIDs.stop)).toBe(false); // no session view is current
    await flush(20);
    expect((added[0].widget as SessionsPanel).list.querySelectorAll('.jps-lab-item')).toHaveLength(1);
    await commands.execute(CommandIDs.open, { id: 'a' });
    expect(added).toHaveLength(2);
    expect(added[1].area).toBe('main');
    expect(added[1].widget.id).toBe('jps-session-a');
    await commands.execute(CommandIDs.open, { id: 'a' }); // already open: activated, not duplicated
    expect(added).toHaveLength(2);
    added.forEach(a => a.widget.dispose());
  });

  it('reads user defaults from the settings editor', () => {
    const values: Record<string, any> = { defaultModel: 'gemini-2.5-flash', temperature: 1.2, maxTokens: 3000, timeout: undefined };
    const settings: any = { get: (k: string) => ({ composite: values[k] }) };
    expect(defaultsFrom(settings)).toEqual({ model: 'gemini-2.5-flash', temperature: 1.2, maxTokens: 3000, timeout: 300 });
    expect(defaultsFrom(null)).toEqual({ model: '', temperature: 0.7, maxTokens: 4000, timeout: 300 });
  });
});
