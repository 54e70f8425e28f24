// Conveyor dashboard: progressive enhancement only — every page works without this script.
// - [data-refresh=ms]: the element's content is re-fetched (the page's live fragment).
// - [data-events=url]: a job page follows the job's Server-Sent Events stream.
// - form[data-confirm]: asks before submitting.

function fragmentUrl() {
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "1");
  return url;
}

async function refresh(element) {
  try {
    const response = await fetch(fragmentUrl(), { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected || !response.ok) {
      element.classList.add("stale");
      return;
    }
    element.innerHTML = await response.text();
    element.classList.remove("stale");
  } catch (error) {
    element.classList.add("stale");  // the server is unreachable: keep what is shown, greyed
  }
}

function keepRefreshing(element) {
  const every = Math.max(1000, Number(element.dataset.refresh) || 5000);
  let timer = null;
  const tick = async () => {
    if (!document.hidden) await refresh(element);
    timer = setTimeout(tick, every);
  };
  timer = setTimeout(tick, every);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { clearTimeout(timer); tick(); }
  });
}

function setText(root, field, text) {
  const node = root.querySelector(`[data-field="${field}"]`);
  if (node) node.textContent = text;
}

function followJob(element) {
  if (element.dataset.terminal === "true" || !window.EventSource) return;
  const source = new EventSource(element.dataset.events, { withCredentials: true });
  let state = null;
  const onEvent = async (event) => {
    const job = JSON.parse(event.data);
    const bar = element.querySelector('[data-field="progress"]');
    if (bar && job.progress !== null && job.progress !== undefined) {
      bar.hidden = false;
      bar.value = job.progress;
      bar.textContent = `${Math.round(job.progress)}%`;
      setText(element, "pct", `${Math.round(job.progress)}%`);
    }
    setText(element, "stage", job.stage || "");
    setText(element, "message", job.message || "");
    const badge = element.querySelector("[data-state]");
    if (state !== null && state !== job.state || ["completed", "failed", "canceled"].includes(job.state)) {
      await refresh(element);  // a new state brings new facts: attempts, result, error
    } else if (badge && badge.textContent !== job.state) {
      badge.textContent = job.state;
      badge.className = `state state-${job.state}`;
    }
    state = job.state;
    if (["completed", "failed", "canceled"].includes(job.state)) source.close();
  };
  source.addEventListener("state", onEvent);
  source.addEventListener("progress", onEvent);
}

function confirmForms() {
  // Delegated: forms inside refreshed fragments are new elements.
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

for (const element of document.querySelectorAll("[data-refresh]")) keepRefreshing(element);
for (const element of document.querySelectorAll("[data-events]")) followJob(element);
confirmForms();
