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

/** Keep the last `size` events, stamped with `now()`. */
export function createEventLog(now: () => number, size = 50): EventLog {
  const events: MasterEvent[] = [];
  return {
    add(kind, message) {
      events.push({ at: now(), kind, message });
      if (events.length > size) events.splice(0, events.length - size);
    },
    latest: (n = size) => events.slice(-n),
  };
}
