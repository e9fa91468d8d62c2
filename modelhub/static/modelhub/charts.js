// Charts drawn from the tables beside them: a <figure data-chart="bar|line"> holds a
// <table> whose header cells with data-series are the series and whose body cells carry
// their number in data-value; the first cell of a row is its label. Without JavaScript
// (or Chart.js) the tables are the page. Options on the figure: data-stacked, data-money
// (dollar ticks), data-reverse (rows newest first: drawn oldest first).
(function () {
  "use strict";

  const PALETTE = ["#417690", "#c4663a", "#b00020", "#79aec8", "#1e7e34", "#6c757d"];

  function cssVar(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function read(table, reverse) {
    const series = [...table.tHead.rows[0].cells]
      .map((cell, index) => ({ cell, index }))
      .filter(({ cell }) => cell.dataset.series);
    const rows = [...table.tBodies[0].rows];
    if (reverse) rows.reverse();
    return {
      labels: rows.map((row) => row.cells[0].textContent.trim()),
      datasets: series.map(({ cell, index }, n) => ({
        label: cell.textContent.trim(),
        data: rows.map((row) => Number(row.cells[index].dataset.value || 0)),
        backgroundColor: PALETTE[n % PALETTE.length],
        borderColor: PALETTE[n % PALETTE.length],
      })),
    };
  }

  function options(figure) {
    const stacked = figure.hasAttribute("data-stacked");
    const grid = { color: cssVar("--hairline-color", "#e8e8e8") };
    const y = { stacked, beginAtZero: true, grid, ticks: { precision: 0 } };
    if (figure.hasAttribute("data-money")) {
      y.ticks = { callback: (value) => "$" + Number(value).toPrecision(3).replace(/\.?0+$/, "") };
    }
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: { x: { stacked, grid }, y },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    };
  }

  function draw(figure) {
    const table = figure.querySelector("table");
    const box = figure.querySelector(".chart");
    if (typeof Chart === "undefined" || !table || !box || !table.tBodies.length) return;
    const canvas = box.querySelector("canvas");
    const existing = Chart.getChart(canvas);
    if (existing) existing.destroy();
    box.hidden = false;
    Chart.defaults.color = cssVar("--body-quiet-color", "#666");
    new Chart(canvas, {
      type: figure.dataset.chart || "bar",
      data: read(table, figure.hasAttribute("data-reverse")),
      options: options(figure),
    });
    // A long table goes behind its toggle once the chart shows the same numbers.
    const numbers = figure.querySelector("details[data-collapse]");
    if (numbers && !numbers.dataset.touched) numbers.open = false;
  }

  function drawAll(root) {
    root.querySelectorAll("figure[data-chart]").forEach(draw);
    root.querySelectorAll("details[data-collapse] > summary").forEach((summary) =>
      summary.addEventListener("click", () => (summary.parentElement.dataset.touched = "1"))
    );
  }

  window.hubCharts = { drawAll };
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
})();
