/** The health gate: the node says hello only while its health_url answers 2xx. */
import { httpRequest } from "./http-request.js";

/** True when `url` answers 2xx (a redirect is not followed) within `timeoutMs`; always true when no url is set. */
export async function checkHealth(url: string, timeoutMs = 2000): Promise<boolean> {
  if (!url) return true;
  const res = await httpRequest(url, { timeoutMs });
  return res !== undefined && res.status >= 200 && res.status < 300;
}
