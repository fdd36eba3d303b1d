// The answer of one of the pack's GET routes (nodes/routes.py) as JSON, or null (with a console warning) when the
// route is unavailable: the web extensions work on without it.
import { api } from "../../scripts/api.js";

export async function fetchPackJson(route, what) {
  try {
    const response = await api.fetchApi(route);
    return response.ok ? await response.json() : null;
  } catch (error) {
    console.warn(`[AniPortrait] ${what} unavailable:`, error);
    return null;
  }
}
