/** The health gate: the node says hello only while its health_url answers 2xx. */

/** True when `url` answers 2xx within `timeoutMs`; always true when no url is set. */
export async function checkHealth(url: string, timeoutMs = 2000): Promise<boolean> {
  if (!url) return true;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
    await res.arrayBuffer().catch(() => undefined);
    return res.status >= 200 && res.status < 300;
  } catch {
    return false;
  }
}
