/**
 * WebSocket helpers shared by the session stream and the session-list watch.
 */

/** Close a socket without hearing from it again (no onclose, no late messages). */
export function closeQuietly(ws: WebSocket | null): void {
  if (!ws) {
    return;
  }
  ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
  try {
    ws.close();
  } catch {
    /* already closed */
  }
}
