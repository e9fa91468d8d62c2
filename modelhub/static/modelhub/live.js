// The dashboard's live refresh: every data-live-seconds, while the page is visible and the
// box is ticked, fetch /dashboard/live (each section rendered anew by the server), swap the
// sections in and redraw their charts. A table's toggle stays as the operator left it.
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;
  const toggle = root.querySelector("[data-live]");
  const updated = root.querySelector("[data-updated]");
  root.querySelector(".live-toggle").hidden = false;

  function openToggles(section) {
    return [...section.querySelectorAll("details")].map((d) => (d.dataset.touched ? d.open : null));
  }

  function restoreToggles(section, states) {
    section.querySelectorAll("details").forEach((details, n) => {
      if (states[n] !== null && states[n] !== undefined) {
        details.dataset.touched = "1";
        details.open = states[n];
      }
    });
  }

  function swap(name, html) {
    const section = root.querySelector(`[data-section="${name}"]`);
    if (!section) return;
    const states = openToggles(section);
    section.innerHTML = html;
    restoreToggles(section, states);
    if (window.hubCharts) window.hubCharts.drawAll(section);
  }

  async function refresh() {
    if (!toggle.checked || document.hidden) return;
    try {
      const response = await fetch(root.dataset.liveUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      Object.entries(data.sections).forEach(([name, html]) => swap(name, html));
      updated.textContent = `Figures of ${data.updated} UTC.`;
      root.dataset.refreshed = data.updated;
    } catch (error) {
      updated.textContent = `Refresh failed (${error.message}); trying again.`;
    }
  }

  setInterval(refresh, (Number(root.dataset.liveSeconds) || 10) * 1000);
})();
