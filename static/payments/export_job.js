// Export jobs (page and list): keep a running job's cells current until it ends.
// Each running job's status cell names its state URL (data-export-state); its
// JSON holds the HTML of every changing cell (data-export-cell), rendered by
// the server as on the page. Polling stops when the job is no longer running,
// or when the server stops answering (a reload starts it again).
(function () {
  "use strict";
  const INTERVAL_MS = 2000;

  function cellsOf(job) {
    return document.querySelectorAll(`[data-export-job="${job}"][data-export-cell]`);
  }

  function apply(job, state) {
    for (const cell of cellsOf(job)) {
      const html = state.cells[cell.dataset.exportCell];
      if (html !== undefined && cell.innerHTML !== html) {
        cell.innerHTML = html;
      }
      if (cell.dataset.exportState !== undefined) {
        cell.dataset.exportRunning = state.running ? "1" : "0";
      }
    }
  }

  function follow(job, url) {
    const poll = async () => {
      let state;
      try {
        const response = await fetch(url, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (!response.ok) {
          return;
        }
        state = await response.json();
      } catch (error) {
        return;
      }
      apply(job, state);
      if (state.running) {
        window.setTimeout(poll, INTERVAL_MS);
      }
    };
    window.setTimeout(poll, INTERVAL_MS);
  }

  function start() {
    const followed = new Set();
    for (const cell of document.querySelectorAll('[data-export-state][data-export-running="1"]')) {
      const job = cell.dataset.exportJob;
      if (!followed.has(job)) {
        followed.add(job);
        follow(job, cell.dataset.exportState);
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
