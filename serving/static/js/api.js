// The public API as the dashboard calls it: this origin's /v1, with the tab's bearer token.
// When the API wants one (LAMBDA_API_TOKEN), the user enters it once per tab: sessionStorage
// keeps it for this tab only, and it goes out only to this origin's /v1.
export const TOKEN_KEY = "lambda.apiToken";

export function apiHeaders() {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

export class Unauthorized extends Error {}

export async function getJSON(url) {
  const response = await fetch(url, { headers: apiHeaders() });
  if (response.status === 401) throw new Unauthorized("the API needs a valid token");
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// An answer whose error statuses the caller shows (409 building, 4xx with a reason).
export async function getAnswer(url) {
  const response = await fetch(url, { headers: apiHeaders() });
  if (response.status === 401) throw new Unauthorized("the API needs a valid token");
  return { status: response.status, ok: response.ok, body: await response.json() };
}
