/** The master's recent events (registrations, refusals, applies, errors), kept for `status`. */

/** One event. `kind` is a stable word; `message` is for people and never holds a secret. */
export interface MasterEvent {
  at: number;
  kind: string;
  message: string;
}

/** A bounded ring of the latest events. */
export interface EventLog {
  add(kind: string, message: string): void;
  latest(n?: number): MasterEvent[];
}

/** Events kept by default: `status` shows the last 20, the status page all of them. */
export const EVENTS_KEPT = 200;

/** Keep the last `size` events, stamped with `now()`; `onAdd` sees each one as it is added. */
export function createEventLog(now: () => number, size = EVENTS_KEPT, onAdd?: (event: MasterEvent) => void): EventLog {
  const events: MasterEvent[] = [];
  return {
    add(kind, message) {
      const event = { at: now(), kind, message };
      events.push(event);
      if (events.length > size) events.splice(0, events.length - size);
      onAdd?.(event);
    },
    latest: (n = size) => events.slice(-n),
  };
}
