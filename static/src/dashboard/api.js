// The dashboard's one data endpoint: a batch of Stats API v2 queries (POST, CSRF).
function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function runQueries(url, queries) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify({ queries }),
  });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  const byId = {};
  for (const entry of body.results) byId[entry.id] = entry;
  // The site's rollups server is down or the site is moving: answers come from SQL, events wait.
  const live = !body.results.some((entry) => entry.result && entry.result.meta && entry.result.meta.live === false);
  return { byId, serverTime: body.server_time, live };
}

export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}
