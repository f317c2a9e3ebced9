// jobarbiter dashboard: the overview's live figures, and confirmations.
// No framework, no inline code (the pages' CSP allows this file alone).
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const PERIOD = 1000; // ms between polls

  function confirmations() {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    }
  }

  function setCell(cell, value) {
    const text = (value.estimate ? "≈" : "") + value.text;
    if (cell.textContent !== text) {
      cell.textContent = text;
    }
    if (value.estimate) {
      cell.setAttribute("data-estimate", "1");
    } else {
      cell.removeAttribute("data-estimate");
    }
  }

  function rowOf(body, name) {
    for (const row of body.rows) {
      if (row.getAttribute("data-queue") === name) {
        return row;
      }
    }
    return null;
  }

  function newRow(html) {
    // The server rendered (and escaped) it: parsed inert, then adopted.
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function updateQueues(queues) {
    const table = document.getElementById("queues");
    if (!table || !table.tBodies.length) {
      return;
    }
    const body = table.tBodies[0];
    const seen = new Set();
    let previous = null;
    for (const queue of queues) {
      seen.add(queue.name);
      let row = rowOf(body, queue.name);
      if (row === null) {
        row = newRow(queue.row);
        body.insertBefore(row, previous ? previous.nextSibling : body.firstChild);
      } else {
        for (const [field, value] of Object.entries(queue.cells)) {
          const cell = row.querySelector('td[data-field="' + field + '"]');
          if (cell) {
            setCell(cell, value);
          }
        }
      }
      previous = row;
    }
    for (const row of Array.from(body.rows)) {
      if (!seen.has(row.getAttribute("data-queue")) && !row.contains(document.activeElement)) {
        row.remove();
      }
    }
    const none = document.getElementById("no-queues");
    if (none && queues.length) {
      none.remove();
    }
  }

  function updateChart(section, chart) {
    const label = document.getElementById("throughput-label");
    if (label && label.textContent !== chart.label) {
      label.textContent = chart.label;
    }
    if (!chart.available) {
      return;
    }
    let line = section.querySelector("polyline");
    if (!line) {
      return; // rendered without history; a reload draws it
    }
    line.setAttribute("points", chart.points);
  }

  function poll(section) {
    const url = section.getAttribute("data-live");
    let busy = false;
    async function tick() {
      if (busy || document.hidden) {
        return;
      }
      busy = true;
      try {
        const answer = await fetch(url, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (answer.ok) {
          const data = await answer.json();
          updateQueues(data.queues);
          updateChart(section, data.chart);
          document.body.removeAttribute("data-stale");
        } else {
          document.body.setAttribute("data-stale", "1");
        }
      } catch (error) {
        document.body.setAttribute("data-stale", "1");
      } finally {
        busy = false;
      }
    }
    window.setInterval(tick, PERIOD);
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmations();
    const section = document.getElementById("throughput");
    if (section && section.getAttribute("data-live")) {
      poll(section);
    }
  });
})();
